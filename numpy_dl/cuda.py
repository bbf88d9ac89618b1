"""`numpy_dl.cuda.is_available()`, so that ported code's device choice
(`device = "cuda" if torch.cuda.is_available() else "cpu"`) runs as written and picks the
CPU: numpy_dl computes with NumPy, on the CPU only."""


def is_available():
    """False: there is no GPU to use, so ported code picks the CPU."""
    return False


def device_count():
    """0: no GPU is visible to numpy_dl."""
    return 0
