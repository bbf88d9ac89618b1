"""numpy_dl's own random stream: initialisation, dropout, shuffling and VAE sampling.

One `np.random.Generator` that `manual_seed` resets, so a seed makes a whole run
repeatable without touching NumPy's legacy global state, and whose state a checkpoint
can save and restore.
"""
import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed numpy_dl's generator, as `torch.manual_seed` does."""
    global _generator
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator():
    return _generator


def get_rng_state():
    """The generator's state as a JSON-friendly dict."""
    return _generator.bit_generator.state


def set_rng_state(state):
    """Put the generator back in a state `get_rng_state()` returned, so the same draws
    follow (a checkpoint restores each rank's stream this way)."""
    _generator.bit_generator.state = state
