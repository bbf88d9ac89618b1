"""Built-in datasets (filled in below)."""
