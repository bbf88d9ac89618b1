"""Shared by the launcher's tests (test_launch_*.py)."""
from PIL import Image


def png_size(path):
    """(width, height) of the PNG at `path`, after decoding all of it."""
    with Image.open(path) as image:
        image.load()
        return image.size
