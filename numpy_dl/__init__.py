"""numpy_dl: a deep-learning framework in NumPy whose flagship models are autoencoders,
trained data-parallel over MPI.

Importing it changes nothing in the process; see numpy_dl.runtime for the settings a
training job may want (BLAS threads per rank, the allocator)."""
import numpy as np

from . import cuda, functional
from .autograd import Tensor, is_grad_enabled, no_grad, ops
from .autograd.creation import (arange, empty, empty_like, eye, full, full_like, linspace, ones,
                                ones_like, rand, rand_like, randint, randn, randn_like, zeros,
                                zeros_like)
from .autograd.ops import (abs, argmax, cat, clip, exp, flatten, log, matmul, maximum, minimum,
                           relu, reshape, sigmoid, sqrt, squeeze, stack, tanh, unsqueeze, where)
# As torch.sum/mean/max; left out of __all__ so `from numpy_dl import *` keeps the builtins.
from .autograd.ops import max, mean, sum  # noqa: F401
from .autograd.tensor import from_numpy, tensor

# dtype names as in PyTorch, so ported code's `dtype=ndl.float32` reads the same.
float16, float32, float64 = np.float16, np.float32, np.float64
int32, int64 = np.int32, np.int64
clamp = clip
from .functional import one_hot
from .random import get_rng_state, manual_seed, set_rng_state

__version__ = "0.1.0"

__all__ = ["Tensor", "tensor", "from_numpy", "cuda", "no_grad", "is_grad_enabled", "manual_seed", "get_rng_state",
           "set_rng_state", "one_hot", "cat", "stack", "abs", "exp", "log", "sqrt", "tanh",
           "sigmoid", "relu", "clip", "clamp", "matmul", "reshape", "flatten", "squeeze",
           "unsqueeze", "where", "argmax", "maximum", "minimum", "zeros", "ones", "empty", "full",
           "arange", "linspace", "eye", "rand", "randn", "randint", "zeros_like", "ones_like",
           "empty_like", "full_like", "rand_like", "randn_like", "float16", "float32", "float64",
           "int32", "int64", "functional", "ops", "__version__"]
