"""Autograd: the Tensor, its differentiable ops, and the switch that turns recording off."""
import numpy as np

from . import ops
from .grad_mode import is_grad_enabled, no_grad
from .tensor import Tensor, unbroadcast


def tensor(data, requires_grad=False, dtype=None):
    """A new leaf Tensor holding a copy of `data`; float data becomes float32 unless `dtype`."""
    if isinstance(data, Tensor):
        data = data.data
    array = np.array(data, dtype=dtype)
    if dtype is None and array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    if requires_grad and array.dtype.kind != "f":
        raise TypeError(f"tensor(requires_grad=True) needs floating-point data, got {array.dtype}")
    return Tensor(array, requires_grad=requires_grad)


def _reflected(op):
    return lambda self, other: op(other, self)


Tensor.__add__ = ops.add
Tensor.__radd__ = _reflected(ops.add)
Tensor.__sub__ = ops.sub
Tensor.__rsub__ = _reflected(ops.sub)
Tensor.__mul__ = ops.mul
Tensor.__rmul__ = _reflected(ops.mul)
Tensor.__truediv__ = ops.div
Tensor.__rtruediv__ = _reflected(ops.div)
Tensor.__pow__ = ops.pow
Tensor.__rpow__ = _reflected(ops.pow)
Tensor.__matmul__ = ops.matmul
Tensor.__rmatmul__ = _reflected(ops.matmul)
Tensor.__neg__ = ops.neg
Tensor.__getitem__ = ops.getitem
Tensor.sum = ops.sum
Tensor.mean = ops.mean
Tensor.max = ops.max
Tensor.reshape = ops.reshape
Tensor.view = ops.reshape
Tensor.permute = ops.permute
Tensor.transpose = ops.transpose
Tensor.T = property(lambda self: ops.permute(self, tuple(reversed(range(self.ndim)))))
Tensor.exp = ops.exp
Tensor.log = ops.log
Tensor.sqrt = ops.sqrt
Tensor.abs = ops.abs
Tensor.clip = ops.clip
Tensor.clamp = ops.clip
Tensor.tanh = ops.tanh
Tensor.sigmoid = ops.sigmoid
Tensor.relu = ops.relu

__all__ = ["Tensor", "tensor", "no_grad", "is_grad_enabled", "ops", "unbroadcast"]
