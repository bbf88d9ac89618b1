"""The differentiable primitives behind Tensor's operators and methods.

Each op computes its value with NumPy and hands `Tensor._make` a closure that maps the
output gradient to the inputs' gradients. Gradients are computed only for inputs that
require them.
"""
import builtins
import inspect
from collections import namedtuple

import numpy as np

from .tensor import Tensor, as_array, unbroadcast


def as_tensor(value, like=None):
    """`value` as a Tensor; constants take `like`'s dtype so they never upcast it."""
    if isinstance(value, Tensor):
        return value
    return Tensor(as_array(value, like.dtype if like is not None else None))


def _binary_operands(a, b):
    """Both operands as Tensors, a constant in the tensor's dtype; a Python float meeting
    an integer tensor makes both float32, PyTorch's default float dtype (int_tensor * 0.5
    is float32 there, not float64 as NumPy would make it)."""
    if isinstance(b, float) and _is_integer_tensor(a):
        a = Tensor(a.data.astype(np.float32))
    if isinstance(a, float) and _is_integer_tensor(b):
        b = Tensor(b.data.astype(np.float32))
    like = a if isinstance(a, Tensor) else b
    return as_tensor(a, like), as_tensor(b, like)


def _is_integer_tensor(value):
    return isinstance(value, Tensor) and value.dtype.kind in "biu"


# ---------------------------------------------------------------------- arithmetic
def add(a, b):
    a, b = _binary_operands(a, b)

    def backward(g):
        return (unbroadcast(g, a.shape) if a.requires_grad else None,
                unbroadcast(g, b.shape) if b.requires_grad else None)
    return Tensor._make(a.data + b.data, (a, b), backward, "add")


def sub(a, b):
    a, b = _binary_operands(a, b)

    def backward(g):
        return (unbroadcast(g, a.shape) if a.requires_grad else None,
                unbroadcast(-g, b.shape) if b.requires_grad else None)
    return Tensor._make(a.data - b.data, (a, b), backward, "sub")


def mul(a, b):
    a, b = _binary_operands(a, b)

    def backward(g):
        return (unbroadcast(g * b.data, a.shape) if a.requires_grad else None,
                unbroadcast(g * a.data, b.shape) if b.requires_grad else None)
    return Tensor._make(a.data * b.data, (a, b), backward, "mul")


def div(a, b):
    a, b = _binary_operands(a, b)

    def backward(g):
        ga = g / b.data
        return (unbroadcast(ga, a.shape) if a.requires_grad else None,
                unbroadcast(-ga * a.data / b.data, b.shape) if b.requires_grad else None)
    return Tensor._make(a.data / b.data, (a, b), backward, "div")


def neg(a):
    return Tensor._make(-a.data, (a,), lambda g: (-g,), "neg")


def pow(a, b):
    a, b = _binary_operands(a, b)
    out = a.data ** b.data

    def backward(g):
        ga = gb = None
        if a.requires_grad:  # d(a**0)/da is 0, also at a = 0 (where a**-1 is inf)
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = np.where(b.data == 0, 0, b.data * a.data ** (b.data - 1))
            ga = unbroadcast(g * slope.astype(out.dtype, copy=False), a.shape)
        if b.requires_grad:
            with np.errstate(divide="ignore", invalid="ignore"):
                log_a = np.where(a.data > 0, np.log(np.where(a.data > 0, a.data, 1)), 0)
            gb = unbroadcast(g * out * log_a.astype(out.dtype), b.shape)
        return ga, gb
    return Tensor._make(out, (a, b), backward, "pow")


def matmul(a, b):
    """`a @ b` with NumPy's rules: 1-D operands are promoted, leading dims broadcast."""
    a, b = _binary_operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: both operands need at least one dimension, got shapes "
                         f"{a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not line up "
                         f"(inner dimensions {a.shape[-1]} and {b.shape[-2 if b.ndim > 1 else 0]})")

    def backward(g):
        a2 = a.data[None, :] if a.ndim == 1 else a.data
        b2 = b.data[:, None] if b.ndim == 1 else b.data
        # Restore the promoted dims, b's first: for 1-D @ 1-D the output is a 0-d scalar.
        g2 = g
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        ga = gb = None
        if a.requires_grad:
            ga = unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if b.requires_grad:
            gb = unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(b.shape)
        return ga, gb
    return Tensor._make(a.data @ b.data, (a, b), backward, "matmul")


# ---------------------------------------------------------------------- reductions
def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(sorted(int(ax) % ndim for ax in axes)) if ndim else ()


def _expand_reduced(g, axes, keepdims):
    """Put back the reduced axes so `g` broadcasts against the input."""
    return g if keepdims else np.expand_dims(g, axes)


def _reduction_axes(a, axis, keepdims, dim, keepdim):
    """(axes, keepdims) from NumPy's `axis`/`keepdims` or PyTorch's `dim`/`keepdim`."""
    if dim is not None:
        if axis is not None:
            raise TypeError("give the reduced dims as axis= or dim=, not both")
        axis = dim
    return _normalize_axes(axis, a.ndim), bool(keepdims or keepdim)


def sum(a, axis=None, keepdims=False, dim=None, keepdim=False):
    """The sum over `axis` (NumPy's spelling) or `dim` (PyTorch's), an int or a tuple; over
    every element when both are None."""
    axes, keepdims = _reduction_axes(a, axis, keepdims, dim, keepdim)

    def backward(g):
        return (np.broadcast_to(_expand_reduced(g, axes, keepdims), a.shape),)
    return Tensor._make(a.data.sum(axis=axes, keepdims=keepdims), (a,), backward, "sum")


def mean(a, axis=None, keepdims=False, dim=None, keepdim=False):
    """The mean over `axis` (NumPy's spelling) or `dim` (PyTorch's), an int or a tuple; over
    every element when both are None."""
    axes, keepdims = _reduction_axes(a, axis, keepdims, dim, keepdim)
    count = int(np.prod([a.shape[ax] for ax in axes]))

    def backward(g):
        scaled = _expand_reduced(g, axes, keepdims) / np.asarray(count, dtype=g.dtype)
        return (np.broadcast_to(scaled, a.shape),)
    return Tensor._make(a.data.mean(axis=axes, keepdims=keepdims), (a,), backward, "mean")


MaxResult = namedtuple("MaxResult", ["values", "indices"])


def max(a, axis=None, keepdims=False, dim=None, keepdim=False):
    """Largest values over `axis` (NumPy's spelling; ties share the gradient evenly, as
    PyTorch's amax does), or PyTorch's `max(dim=d)`: (values, indices) of the first
    largest element along d, the gradient going to that element alone."""
    if dim is not None:
        return _max_along(a, _dim("max", dim, a.shape), keepdim)
    axes, keepdims = _reduction_axes(a, axis, keepdims, None, False)
    out = a.data.max(axis=axes, keepdims=True)

    def backward(g):
        winners = (a.data == out).astype(g.dtype)
        winners /= winners.sum(axis=axes, keepdims=True)
        return (winners * _expand_reduced(g, axes, keepdims),)
    value = out if keepdims else np.squeeze(out, axis=axes)
    return Tensor._make(value, (a,), backward, "max")


def _max_along(a, dim, keepdim):
    index = np.argmax(a.data, axis=dim, keepdims=True)
    values = np.take_along_axis(a.data, index, axis=dim)

    def backward(g):
        grad = np.zeros(a.shape, g.dtype)
        np.put_along_axis(grad, index, g if keepdim else np.expand_dims(g, dim), axis=dim)
        return (grad,)
    shown = index if keepdim else np.squeeze(index, dim)
    return MaxResult(Tensor._make(values if keepdim else np.squeeze(values, dim), (a,),
                                  backward, "max"), Tensor(shown.astype(np.int64)))


def argmax(a, dim=None, keepdim=False):
    """Index of the first largest element (of the flattened tensor when `dim` is None),
    int64, as `torch.argmax`."""
    if dim is None:
        index = np.argmax(a.data)
        return Tensor(np.asarray(index, np.int64).reshape((1,) * a.ndim if keepdim else ()))
    index = np.argmax(a.data, axis=_dim("argmax", dim, a.shape), keepdims=keepdim)
    return Tensor(index.astype(np.int64))


# ---------------------------------------------------------------------- shapes
def reshape(a, *shape):
    """`a` with another shape of the same size, given as a tuple or as separate ints
    (`reshape(a, 2, -1)`), as `torch.reshape`; ValueError when the sizes differ."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        out = a.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot view shape {a.shape} ({a.data.size} elements) "
                         f"as {shape}") from None
    return Tensor._make(out, (a,), lambda g: (g.reshape(a.shape),), "reshape")


def _dim(call, dim, shape, positions=None):
    """`dim` counted from 0, or IndexError (as PyTorch) when it is not one of the
    `positions` dims (by default those of `shape`; a 0-d tensor has one)."""
    size = builtins.max(len(shape), 1) if positions is None else positions
    if not -size <= dim < size:
        raise IndexError(f"{call}: dim {dim} is out of range for shape {shape} (expected a "
                         f"dim in [{-size}, {size - 1}])")
    return dim % size


def flatten(a, start_dim=0, end_dim=-1):
    """Merge dims start_dim..end_dim into one, as `torch.flatten` (a 0-d tensor becomes 1-d)."""
    start, end = _dim("flatten", start_dim, a.shape), _dim("flatten", end_dim, a.shape)
    if a.ndim == 0:
        return reshape(a, 1)
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for "
                         f"shape {a.shape}")
    merged = int(np.prod(a.shape[start:end + 1]))  # not -1: an empty tensor cannot infer it
    return reshape(a, a.shape[:start] + (merged,) + a.shape[end + 1:])


def unsqueeze(a, dim):
    """A new dim of size 1 at `dim` (counted in the output, -1 appends), as PyTorch."""
    dim = _dim("unsqueeze", dim, a.shape, positions=a.ndim + 1)
    return reshape(a, a.shape[:dim] + (1,) + a.shape[dim:])


def squeeze(a, dim=None):
    """Drop dims of size 1: all of them, or those of `dim` (an int or tuple) that have size
    1; a named dim of another size is left alone, as in PyTorch."""
    if dim is None:
        dims = range(a.ndim)
    else:
        named = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
        dims = [_dim("squeeze", d, a.shape) for d in named]
        if len(set(dims)) != len(dims):
            raise ValueError(f"squeeze: dim {dim} names a dim more than once")
    keep = [n for i, n in enumerate(a.shape) if not (i in dims and n == 1)]
    return reshape(a, tuple(keep))


def permute(a, *dims):
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    if sorted(d % a.ndim for d in dims) != list(range(a.ndim)):
        raise ValueError(f"permute: {dims} is not a permutation of the {a.ndim} dims of {a.shape}")
    inverse = np.argsort([d % a.ndim for d in dims])
    return Tensor._make(a.data.transpose(dims), (a,), lambda g: (g.transpose(inverse),), "permute")


def transpose(a, dim0, dim1):
    return Tensor._make(np.swapaxes(a.data, dim0, dim1), (a,),
                        lambda g: (np.swapaxes(g, dim0, dim1),), "transpose")


def clone(a):
    """A copy that stays in the graph (gradients flow back to `a`)."""
    return Tensor._make(a.data.copy(), (a,), lambda g: (g,), "clone")


def cast(a, dtype):
    """`a` as `dtype`; the gradient comes back in `a`'s dtype. A cast to an integer dtype
    leaves the graph, as in PyTorch: integers have no gradient."""
    if np.dtype(dtype).kind != "f":
        return Tensor(a.data.astype(dtype))
    return Tensor._make(a.data.astype(dtype), (a,), lambda g: (g.astype(a.dtype),), "cast")


def _index_data(index):
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(_index_data(i) for i in index)
    return index


def _is_basic(index):
    """Only ints, slices, None and Ellipsis: each element is picked at most once, so the
    gradient can be assigned; anything else (arrays, lists, nested tuples, masks) may
    repeat elements and must be accumulated."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice)) or p is None or p is Ellipsis
               for p in parts if not isinstance(p, (bool, np.bool_)))


def getitem(a, index):
    index = _index_data(index)
    basic = _is_basic(index)

    def backward(g):
        grad = np.zeros_like(a.data)
        if basic:
            grad[index] = g
        else:
            np.add.at(grad, index, g)  # repeated indices must accumulate
        return (grad,)
    return Tensor._make(a.data[index], (a,), backward, "getitem")


def cat(tensors, dim=0):
    """The tensors joined along their existing dimension `dim`, as `torch.cat`; each gets
    its own slice of the gradient back."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat: needs at least one tensor")
    try:
        out = np.concatenate([t.data for t in tensors], axis=dim)
    except ValueError as error:
        shapes = [t.shape for t in tensors]
        raise ValueError(f"cat: shapes {shapes} differ outside dim {dim}: {error}") from None
    bounds = np.cumsum([t.shape[dim] for t in tensors])[:-1]

    def backward(g):
        return tuple(np.split(g, bounds, axis=dim))
    return Tensor._make(out, tuple(tensors), backward, "cat")


def stack(tensors, dim=0):
    """The tensors, all of one shape, joined along a new dimension `dim`, as `torch.stack`."""
    tensors = [as_tensor(t) for t in tensors]
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors need the same shape, got {[t.shape for t in tensors]}")
    out = np.stack([t.data for t in tensors], axis=dim)

    def backward(g):
        return tuple(np.moveaxis(g, dim, 0))
    return Tensor._make(out, tuple(tensors), backward, "stack")


def where(condition, input=None, other=None):
    """`input` where `condition` holds, else `other`, broadcast together, as `torch.where`;
    the gradient goes to the side that was picked. `where(condition)` alone gives the
    indices of its true elements, one int64 tensor per dim."""
    cond = np.asarray(condition.data if isinstance(condition, Tensor) else condition)
    if input is None and other is None:
        return tuple(Tensor(i.astype(np.int64)) for i in np.nonzero(np.atleast_1d(cond)))
    if cond.dtype != bool:
        raise TypeError(f"where: condition must be boolean, got {cond.dtype}")
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        input = Tensor(as_array(input, np.float32))  # two Python numbers: float32, as PyTorch
    a, b = _binary_operands(input, other)
    out = np.where(cond, a.data, b.data)

    def backward(g):
        zero = np.zeros((), g.dtype)
        return (unbroadcast(np.where(cond, g, zero), a.shape) if a.requires_grad else None,
                unbroadcast(np.where(cond, zero, g), b.shape) if b.requires_grad else None)
    return Tensor._make(out, (a, b), backward, "where")


def _extremum(a, b, pick, loses, name):
    """Elementwise maximum or minimum (`pick`) with PyTorch's gradient: the side that
    `loses` gets none, a tie gives each side half, and a NaN passes it to both."""
    a, b = _binary_operands(a, b)

    def backward(g):
        shared = np.where(a.data == b.data, g * 0.5, g)
        return (unbroadcast(np.where(loses(a.data, b.data), 0, shared), a.shape)
                if a.requires_grad else None,
                unbroadcast(np.where(loses(b.data, a.data), 0, shared), b.shape)
                if b.requires_grad else None)
    return Tensor._make(pick(a.data, b.data), (a, b), backward, name)


def maximum(a, b):
    """The elementwise larger of `a` and `b`, broadcast together, as `torch.maximum`: the
    smaller side gets no gradient, and a tie gives each side half."""
    return _extremum(a, b, np.maximum, np.less, "maximum")


def minimum(a, b):
    """The elementwise smaller of `a` and `b`, broadcast together, as `torch.minimum`: the
    larger side gets no gradient, and a tie gives each side half."""
    return _extremum(a, b, np.minimum, np.greater, "minimum")


# ---------------------------------------------------------------------- elementwise
def exp(a):
    """e to the power `a`, elementwise."""
    out = np.exp(a.data)
    return Tensor._make(out, (a,), lambda g: (g * out,), "exp")


def log(a):
    """The natural logarithm, elementwise."""
    return Tensor._make(np.log(a.data), (a,), lambda g: (g / a.data,), "log")


def sqrt(a):
    """The square root, elementwise."""
    out = np.sqrt(a.data)
    return Tensor._make(out, (a,), lambda g: (g / (2 * out),), "sqrt")


def abs(a):
    """The absolute value, elementwise; its gradient is the sign of `a` (0 at 0)."""
    return Tensor._make(np.abs(a.data), (a,), lambda g: (g * np.sign(a.data),), "abs")


def clip(a, min=None, max=None):
    """Clamp to [min, max]; the gradient passes where the input lies inside, ends included."""
    out = np.clip(a.data, min, max)

    def backward(g):
        inside = np.ones(a.shape, dtype=bool)
        if min is not None:
            inside &= a.data >= min
        if max is not None:
            inside &= a.data <= max
        return (g * inside,)
    return Tensor._make(out, (a,), backward, "clip")


def tanh(a):
    """The hyperbolic tangent, elementwise."""
    out = np.tanh(a.data)
    return Tensor._make(out, (a,), lambda g: (g * (1 - out * out),), "tanh")


def sigmoid(a):
    """The logistic function 1 / (1 + exp(-a)), elementwise, without overflow for any `a`."""
    # 0.5 * (1 + tanh(x / 2)) never overflows, unlike 1 / (1 + exp(-x)).
    out = np.tanh(a.data * np.asarray(0.5, a.dtype))
    out *= 0.5
    out += 0.5
    return Tensor._make(out, (a,), lambda g: (g * out * (1 - out),), "sigmoid")


def relu(a, inplace=False):
    """max(a, 0), elementwise; the gradient passes where the output is positive.
    `inplace=True` writes the result over `a`'s values instead of new memory, as PyTorch's:
    only for an `a` that nothing reads afterwards, its own op's backward included
    (nn.Sequential does it after a Linear or a convolution)."""
    if inplace and a.is_leaf and a.requires_grad:
        raise RuntimeError("relu(inplace=True) on a leaf that requires grad would change "
                           "the values its gradient is taken at; use inplace=False")
    # Against an array of zeros in the input's own memory order, not the scalar 0:
    # NumPy 2.4 then runs its vectorised loop, 2-3x faster on a convolution's output.
    out = np.maximum(a.data, np.zeros_like(a.data), out=a.data if inplace else None)
    # The mask as uint8, not bool: when the gradient's memory order differs from the
    # output's (after a flatten), float32 * bool takes a buffered cast, ~7x slower.
    return Tensor._make(out, (a,), lambda g: (g * (out > 0).view(np.uint8),), "relu")


def leaky_relu(a, negative_slope=0.01):
    """`a` where it is positive, else `negative_slope * a`, as
    `torch.nn.functional.leaky_relu`."""
    slope = np.where(a.data > 0, np.asarray(1, a.dtype), np.asarray(negative_slope, a.dtype))
    return Tensor._make(a.data * slope, (a,), lambda g: (g * slope,), "leaky_relu")


def _document_tensor_methods():
    """Give each Tensor method that calls an op (t.sum, t.reshape, ...) the op's docstring
    and signature, so that help(t.sum) and the API reference say what it takes; tensor.py
    cannot, being imported before this module."""
    for method in vars(Tensor).values():
        op = globals().get(getattr(method, "op_name", None))
        if op is not None:
            method.__doc__ = op.__doc__
            method.__signature__ = inspect.signature(op)


_document_tensor_methods()
