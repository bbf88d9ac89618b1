"""Nearest-neighbour resizing of NCHW images, with PyTorch's source-pixel rule."""
import numbers

import numpy as np

from ..autograd import Tensor
from .linear import check_float

MODES = ("nearest",)


def _output_sizes(call, in_size, size, scale_factor):
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{call}: give exactly one of size and scale_factor")
    if size is not None:
        sizes = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
        if len(sizes) != 2 or not all(isinstance(s, numbers.Integral) and s >= 1 for s in sizes):
            raise ValueError(f"{call}: size must be a positive int or a pair of them, got {size!r}")
        return tuple(int(s) for s in sizes), (None, None)
    scales = (scale_factor,) * 2 if isinstance(scale_factor, numbers.Real) else tuple(scale_factor)
    if len(scales) != 2 or not all(isinstance(s, numbers.Real) and s > 0 for s in scales):
        raise ValueError(f"{call}: scale_factor must be a positive number or a pair of them, "
                         f"got {scale_factor!r}")
    sizes = tuple(int(np.floor(n * s)) for n, s in zip(in_size, scales))
    if min(sizes) < 1:
        raise ValueError(f"{call}: scale_factor {scale_factor!r} shrinks {in_size} to nothing")
    return sizes, scales


def _sources(in_size, out_size, scale_factor):
    """The input index each output index copies: floor(i * in/out) in float32, or
    floor(i / scale_factor) when a scale factor was given, clipped to the input (as
    PyTorch's 'nearest'); an output of exactly twice the input repeats each pixel twice."""
    if out_size == in_size:
        return np.arange(out_size)
    if out_size == 2 * in_size:  # PyTorch's special case, whatever the scale factor said
        return np.arange(out_size) // 2
    ratio = np.float32(1 / scale_factor if scale_factor else in_size / out_size)
    index = np.floor(np.arange(out_size, dtype=np.float32) * ratio).astype(np.int64)
    return np.minimum(index, in_size - 1)


def _sum_back(g, sources, in_size, axis):
    """The adjoint of taking `sources` along `axis`: add the gradients of the outputs that
    copied each input index. The sources never decrease, so each input's outputs form one
    run, summed with one reduceat; inputs that no output copied get zero."""
    used, first = np.unique(sources, return_index=True)
    shape = list(g.shape)
    shape[axis] = in_size
    grad = np.zeros(shape, g.dtype)
    index = [slice(None)] * g.ndim
    index[axis] = used
    grad[tuple(index)] = np.add.reduceat(g, first, axis=axis)
    return grad


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Resize an (N, C, H, W) image to `size` or by `scale_factor`, as
    `torch.nn.functional.interpolate` in mode 'nearest' (the only mode here)."""
    if mode not in MODES:
        raise ValueError(f"interpolate: mode {mode!r} is not supported; expected one of {MODES}")
    if align_corners is not None:
        raise ValueError("interpolate: align_corners applies to the linear modes only; "
                         "leave it None for 'nearest'")
    if input.ndim != 4:
        raise ValueError(f"interpolate: expected input of shape (N, C, H, W), got {input.shape}")
    check_float("interpolate", input)
    in_size = input.shape[2:]
    out_size, scales = _output_sizes("interpolate", in_size, size, scale_factor)
    if recompute_scale_factor:
        if size is not None:
            raise ValueError("interpolate: recompute_scale_factor applies to scale_factor; "
                             "with size= leave it None")
        scales = (None, None)
    rows, cols = (_sources(n, o, s) for n, o, s in zip(in_size, out_size, scales))
    repeats = _repeats(rows, in_size[0]), _repeats(cols, in_size[1])
    if None not in repeats:
        return _repeat_pixels(input, *repeats)
    out = input.data[:, :, rows[:, None], cols[None, :]]

    def backward(g):
        return (_sum_back(_sum_back(g, cols, in_size[1], 3), rows, in_size[0], 2),)
    return Tensor._make(out, (input,), backward, "interpolate")


def _repeats(sources, in_size):
    """k when the sources are 0, .., 0, 1, .., 1, ... each k times (an integer upscale):
    then one broadcast copy forward and one reshaped sum backward replace the gathers."""
    k = len(sources) // in_size
    if k * in_size == len(sources) and np.array_equal(sources, np.arange(len(sources)) // k):
        return k
    return None


def _repeat_pixels(input, kh, kw):
    """Each pixel as a kh x kw block. Both directions go through (N, C, H, kh, W, kw)
    views and loop over the kh*kw block offsets: NumPy sums over two inner strided axes
    several times slower than it adds kh*kw strided views."""
    n, c, h, w = input.shape
    out = np.empty((n, c, h, kh, w, kw), input.dtype)
    out[...] = input.data[:, :, :, None, :, None]

    def backward(g):
        blocks = g.reshape(n, c, h, kh, w, kw)
        grad = blocks[:, :, :, 0, :, 0].copy()
        for i in range(kh):
            for j in range(kw):
                if i or j:
                    grad += blocks[:, :, :, i, :, j]
        return (grad,)
    return Tensor._make(out.reshape(n, c, h * kh, w * kw), (input,), backward, "interpolate")
