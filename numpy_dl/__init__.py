"""numpy_dl: a deep-learning framework in NumPy whose flagship models are autoencoders,
trained data-parallel over MPI."""
from . import functional
from .autograd import Tensor, is_grad_enabled, no_grad, ops
from .autograd.tensor import tensor
from .functional import one_hot
from .random import get_rng_state, manual_seed, set_rng_state

__version__ = "0.1.0"

cat = ops.cat
stack = ops.stack
abs = ops.abs
exp = ops.exp
log = ops.log
sqrt = ops.sqrt
tanh = ops.tanh
sigmoid = ops.sigmoid
relu = ops.relu
clip = ops.clip
matmul = ops.matmul
reshape = ops.reshape

__all__ = ["Tensor", "tensor", "no_grad", "is_grad_enabled", "manual_seed", "get_rng_state",
           "set_rng_state", "one_hot", "cat", "stack", "abs", "exp", "log", "sqrt", "tanh",
           "sigmoid", "relu", "clip", "matmul", "reshape", "functional", "__version__"]
