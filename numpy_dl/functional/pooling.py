"""2-D max and average pooling with PyTorch's output sizes, padding and tie rules.

Both walk the kh*kw kernel offsets ("taps"): each tap is one strided view of the padded
input covering every output position at once, so the Python loop runs over the few
offsets of the kernel, never over pixels. Backward adds each tap's share of the output
gradient into the same strided view of a padded gradient, which also sums the
contributions of overlapping windows.
"""
import numbers

import numpy as np

from ..autograd import Tensor, ops
from .conv import pair
from .linear import check_float


def _output_size(size, kernel, stride, padding, ceil_mode):
    """PyTorch's rule: floor (or ceil) of (size + 2p - k) / s, plus one; with ceil_mode
    the last window must still start inside the input or its left padding."""
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


class _Windows:
    """The pooling geometry of an NCHW input: output size and one strided view per tap."""

    def __init__(self, call, x, kernel_size, stride, padding, ceil_mode):
        if x.ndim != 4:
            raise ValueError(f"{call}: expected input of shape (N, C, H, W), got {x.shape}")
        check_float(call, x)
        self.kernel = pair(kernel_size, "kernel_size", 1)
        no_stride = stride is None or (isinstance(stride, (tuple, list)) and not stride)
        self.stride = self.kernel if no_stride else pair(stride, "stride", 1)
        self.padding = pair(padding, "padding")
        if any(2 * p > k for p, k in zip(self.padding, self.kernel)):
            raise ValueError(f"{call}: padding {self.padding} must be at most half of "
                             f"kernel_size {self.kernel}")
        self.in_size = x.shape[2:]
        self.out_size = tuple(_output_size(n, k, s, p, ceil_mode) for n, k, s, p in
                              zip(self.in_size, self.kernel, self.stride, self.padding))
        if min(self.out_size) < 1:
            raise ValueError(f"{call}: input {x.shape} is smaller than kernel_size "
                             f"{self.kernel} with padding {self.padding}")
        # Room for every window, including a ceil_mode window that overhangs the padding.
        self.padded_size = tuple(max(n + 2 * p, (o - 1) * s + k) for n, p, o, s, k in zip(
            self.in_size, self.padding, self.out_size, self.stride, self.kernel))

    @property
    def padded(self):
        return self.padded_size != self.in_size

    def pad(self, data, fill):
        (ph, pw), (h, w) = self.padding, self.in_size
        padded = np.full(data.shape[:2] + self.padded_size, fill, dtype=data.dtype)
        padded[:, :, ph:ph + h, pw:pw + w] = data
        return padded

    def crop(self, padded):
        (ph, pw), (h, w) = self.padding, self.in_size
        return padded[:, :, ph:ph + h, pw:pw + w]

    def taps(self, padded):
        """(tap index, view) for every kernel offset: view[n, c, i, j] is that offset's
        element of window (i, j)."""
        (sh, sw), (oh, ow) = self.stride, self.out_size
        for i in range(self.kernel[0]):
            for j in range(self.kernel[1]):
                yield (i * self.kernel[1] + j,
                       padded[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw])


def _unbatched(pool):
    """Let `pool` take an unbatched (C, H, W) image too, as PyTorch's pooling does."""
    def pool_any(input, *args, **kwargs):
        if input.ndim == 3:
            return ops.squeeze(pool(ops.unsqueeze(input, 0), *args, **kwargs), 0)
        return pool(input, *args, **kwargs)
    pool_any.__name__, pool_any.__doc__ = pool.__name__, pool.__doc__
    return pool_any


@_unbatched
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """The largest value of each window, as `torch.nn.functional.max_pool2d`. The whole
    gradient goes to the first largest element of a window in row-major order, a NaN
    wins, and a real element beats the padding even at -inf (all as PyTorch's CPU
    kernel)."""
    if pair(dilation, "dilation", 1) != (1, 1) or return_indices:
        raise ValueError("max_pool2d: dilation and return_indices are not supported; "
                         "expected dilation=1, return_indices=False")
    geometry = _Windows("max_pool2d", input, kernel_size, stride, padding, ceil_mode)
    padded = geometry.pad(input.data, -np.inf)
    # Which taps read real pixels, where there is padding: a real -inf beats the padding's.
    real = dict(geometry.taps(geometry.pad(np.ones((1, 1) + geometry.in_size, bool), False))) \
        if geometry.padded else None
    best = winner = best_is_real = None
    for tap, view in geometry.taps(padded):
        if best is None:
            best, winner = view.copy(), np.zeros(view.shape, np.int32)
            best_is_real = real[tap] if real else None
            continue
        better = (view > best) | np.isnan(view)
        if real:
            better = (better | ~best_is_real) & real[tap]
            best_is_real = best_is_real | real[tap]
        np.copyto(best, view, where=better)
        winner[better] = tap

    def backward(g):
        grad = np.zeros(padded.shape, g.dtype)
        for tap, view in geometry.taps(grad):
            view += np.where(winner == tap, g, 0)
        return (geometry.crop(grad),)
    return Tensor._make(best, (input,), backward, "max_pool2d")


@_unbatched
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """The mean of each window, as `torch.nn.functional.avg_pool2d`: padding counts in the
    divisor when count_include_pad, the part of a ceil_mode window beyond the padding never
    does, and divisor_override replaces the divisor."""
    geometry = _Windows("avg_pool2d", input, kernel_size, stride, padding, ceil_mode)
    padded = geometry.pad(input.data, 0)
    total = None
    for _, view in geometry.taps(padded):
        total = view.copy() if total is None else np.add(total, view, out=total)
    if divisor_override is not None:
        if not isinstance(divisor_override, numbers.Integral) or divisor_override < 1:
            raise ValueError(f"avg_pool2d: divisor_override must be a positive integer, got "
                             f"{divisor_override!r}")
        divisor = np.asarray(int(divisor_override), input.dtype)
    else:
        divisor = _divisor(geometry, count_include_pad).astype(input.dtype)
    out = total / divisor

    def backward(g):
        share = g / divisor
        grad = np.zeros(padded.shape, g.dtype)
        for _, view in geometry.taps(grad):
            view += share
        return (geometry.crop(grad),)
    return Tensor._make(out, (input,), backward, "avg_pool2d")


def _divisor(geometry, count_include_pad):
    """Each window's element count, an (out_h, out_w) array: per axis, the window clipped
    to the padded input (count_include_pad) or to the input itself."""
    counts = []
    for n, k, s, p, o in zip(geometry.in_size, geometry.kernel, geometry.stride,
                             geometry.padding, geometry.out_size):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, n)
        counts.append(end - start)
    return np.outer(*counts)
