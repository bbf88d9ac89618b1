"""Tensor-creation functions with PyTorch's signatures and default dtypes.

Shapes are given as `zeros(2, 3)` or `zeros((2, 3))`; float results are float32 unless
`dtype` says otherwise, integer ones int64, as in PyTorch. The random ones draw from
numpy_dl's own stream (`manual_seed`) unless a `generator` (an `np.random.Generator`) is
given. `device` accepts "cpu" or None (see `check_device`).
"""
import numbers

import numpy as np

from .. import random
from .tensor import Tensor, check_device, check_differentiable


def _shape(size, call, keyword=None):
    """(2, 3) from `f(2, 3)`, `f((2, 3))`, `f([2, 3])` or `f(size=(2, 3))`."""
    if keyword is not None:
        if size:
            raise TypeError(f"{call}: give the size positionally or as size=, not both")
        size = (keyword,)
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 0
               for n in size):
        raise ValueError(f"{call}: the size must be non-negative integers, got {size}")
    return tuple(int(n) for n in size)


def _leaf(array, dtype, device, requires_grad, call):
    check_device(device)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    if requires_grad:
        check_differentiable(array.dtype, call)
    return Tensor(array, requires_grad=requires_grad)


def _float(dtype):
    return np.float32 if dtype is None else dtype


def zeros(*args, size=None, dtype=None, device=None, requires_grad=False):
    """Filled with 0, float32 unless `dtype` says otherwise: `zeros(2, 3)` or `zeros((2, 3))`."""
    return _leaf(np.zeros(_shape(args, "zeros", size), _float(dtype)), None, device, requires_grad,
                 "zeros")


def ones(*args, size=None, dtype=None, device=None, requires_grad=False):
    """Filled with 1, float32 unless `dtype` says otherwise: `ones(2, 3)` or `ones((2, 3))`."""
    return _leaf(np.ones(_shape(args, "ones", size), _float(dtype)), None, device, requires_grad,
                 "ones")


def empty(*args, size=None, dtype=None, device=None, requires_grad=False):
    """Uninitialised (whatever the memory held), float32 unless `dtype` says otherwise: for
    a tensor whose every element is written before it is read."""
    return _leaf(np.empty(_shape(args, "empty", size), _float(dtype)), None, device, requires_grad,
                 "empty")


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    """Filled with `fill_value`; its kind sets the dtype as in PyTorch (bool, int64 or
    float32) unless `dtype` is given."""
    if dtype is None:
        kind = np.asarray(fill_value).dtype.kind
        dtype = {"b": np.bool_, "i": np.int64, "u": np.int64}.get(kind, np.float32)
    return _leaf(np.full(_shape((size,), "full"), fill_value, dtype), None, device,
                 requires_grad, "full")


def arange(start=0, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """[start, end) in steps of `step` (`arange(end)` counts from 0); int64 when all three
    are integers, else float32."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    integral = all(isinstance(v, numbers.Integral) for v in (start, end, step))
    values = np.arange(start, end, step, dtype=np.int64 if integral else np.float64)
    return _leaf(values, dtype or (None if integral else np.float32), device, requires_grad,
                 "arange")


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    """`steps` evenly spaced values from `start` to `end`, both included, float32 unless
    `dtype` says otherwise."""
    if not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"linspace: steps must be a non-negative integer, got {steps!r}")
    return _leaf(np.linspace(start, end, int(steps)), _float(dtype), device, requires_grad,
                 "linspace")


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    """The n x m (n x n when `m` is None) matrix with ones on the diagonal, zeros elsewhere;
    float32 unless `dtype` says otherwise."""
    return _leaf(np.eye(n, n if m is None else m, dtype=_float(dtype)), None, device,
                 requires_grad, "eye")


def _generator(generator):
    return random.generator() if generator is None else generator


def rand(*args, size=None, generator=None, dtype=None, device=None, requires_grad=False):
    """Uniform on [0, 1)."""
    values = _generator(generator).random(_shape(args, "rand", size), dtype=_float_draw(dtype))
    return _leaf(values, dtype, device, requires_grad, "rand")


def randn(*args, size=None, generator=None, dtype=None, device=None, requires_grad=False):
    """Standard normal."""
    values = _generator(generator).standard_normal(_shape(args, "randn", size),
                                                   dtype=_float_draw(dtype))
    return _leaf(values, dtype, device, requires_grad, "randn")


def _float_draw(dtype):
    """NumPy draws float32 or float64; other float dtypes are cast from float32."""
    if dtype is not None and np.dtype(dtype).kind != "f":
        raise TypeError(f"rand and randn draw floating-point values, got dtype {dtype}; "
                        f"use randint for integers")
    return np.float64 if dtype is not None and np.dtype(dtype) == np.float64 else np.float32


def randint(*args, low=None, high=None, size=None, generator=None, dtype=None, device=None,
            requires_grad=False):
    """Integers in [low, high), as `randint(high, size)` or `randint(low, high, size)`
    (each also by keyword; low defaults to 0); int64 unless `dtype`."""
    # Positional arguments fill (high, size) or (low, high, size); keywords the rest.
    names = ("low", "high", "size") if len(args) == 3 or (len(args) == 2 and size is not None) \
        else ("high", "size")
    given = dict(zip(names, args))
    for name, value in (("low", low), ("high", high), ("size", size)):
        if value is not None:
            if name in given:
                raise TypeError(f"randint: {name} given twice")
            given[name] = value
    if "high" not in given or "size" not in given or len(args) > 3:
        raise TypeError("randint: expected randint(high, size) or randint(low, high, size)")
    low, high, size = given.get("low", 0), given["high"], given["size"]
    if high <= low:
        raise ValueError(f"randint: need low < high, got low={low}, high={high}")
    values = _generator(generator).integers(low, high, _shape((size,), "randint"),
                                            dtype=np.int64)
    return _leaf(values, dtype, device, requires_grad, "randint")


def _like(call, make):
    """`call`_like(input, dtype=None, ...): `make` for input's shape, in input's dtype."""
    def like(input, dtype=None, device=None, requires_grad=False, **options):
        return make(np.shape(input), **options, dtype=dtype or np.asarray(input).dtype,
                    device=device, requires_grad=requires_grad)
    like.__name__ = like.__qualname__ = f"{call}_like"
    like.__doc__ = f"`{call}` with the shape and (unless `dtype` is given) the dtype of `input`."
    return like


zeros_like = _like("zeros", zeros)
ones_like = _like("ones", ones)
empty_like = _like("empty", empty)
rand_like = _like("rand", rand)
randn_like = _like("randn", randn)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):
    """`full` with the shape and (unless `dtype` is given) the dtype of `input`."""
    return full(input.shape, fill_value, dtype=dtype or input.dtype, device=device,
                requires_grad=requires_grad)
