"""`numpy_dl.cuda.is_available()`, so that ported code's device choice
(`device = "cuda" if torch.cuda.is_available() else "cpu"`) runs as written and picks the
CPU: numpy_dl computes with NumPy, on the CPU only."""


def is_available():
    return False


def device_count():
    return 0
