"""Whether ops record a graph: `no_grad()` turns recording off for inference."""
import functools
import threading

_state = threading.local()


def is_grad_enabled():
    """False inside `no_grad()` (in this thread), else True: whether ops record a graph."""
    return getattr(_state, "enabled", True)


class no_grad:
    """Context manager (and decorator) under which ops build no graph, as in PyTorch."""

    def __enter__(self):
        self._previous = is_grad_enabled()
        _state.enabled = False

    def __exit__(self, *exc_info):
        _state.enabled = self._previous
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with no_grad():
                return func(*args, **kwargs)
        return wrapper
