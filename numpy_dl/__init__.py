"""numpy_dl: a deep-learning framework in NumPy whose flagship models are autoencoders,
trained data-parallel over MPI.

Importing it changes nothing in the process; see numpy_dl.runtime for the settings a
training job may want (BLAS threads per rank, the allocator)."""
from . import functional
from .autograd import Tensor, is_grad_enabled, no_grad, ops
from .autograd.ops import (abs, cat, clip, exp, log, matmul, relu, reshape, sigmoid, sqrt, stack,
                           tanh)
from .autograd.tensor import tensor
from .functional import one_hot
from .random import get_rng_state, manual_seed, set_rng_state

__version__ = "0.1.0"

__all__ = ["Tensor", "tensor", "no_grad", "is_grad_enabled", "manual_seed", "get_rng_state",
           "set_rng_state", "one_hot", "cat", "stack", "abs", "exp", "log", "sqrt", "tanh",
           "sigmoid", "relu", "clip", "matmul", "reshape", "functional", "ops", "__version__"]
