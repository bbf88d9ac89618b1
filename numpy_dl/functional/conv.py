"""2-D convolution and transposed convolution, im2col + GEMM.

Convolutions work channels-last inside: the padded input is an (N, H, W, C) array whose
kernel windows are strided views, copied once into a patch matrix for a single GEMM.
Their NCHW outputs are transposed views of NHWC memory, which the next convolution reads
without another copy. The input gradient is the adjoint: one GEMM, then a sum over the
kh*kw kernel offsets, one small GEMM each (never `np.add.at`, never a loop over pixels or
samples). conv2d's weight gradient is one GEMM per offset too, on the input padded
again: the forward's patch matrix, kh*kw times the input, does not wait in memory for
backward (a third of a ConvVAE's training memory; 1-3% of its step).
"""
import numpy as np

from ..autograd import Tensor
from ..autograd.ops import as_tensor
from .linear import check_float, column_sums


def pair(value, name, minimum=0):
    """(h, w) from an int or a pair; a stride needs minimum=1 (0 would divide by zero)."""
    values = (value,) if isinstance(value, (int, np.integer)) else value
    if isinstance(values, (tuple, list)) and len(values) == 1:
        values = tuple(values) * 2  # (k,) means (k, k), as in PyTorch
    if not (isinstance(values, (tuple, list)) and len(values) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum
            for v in values)):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(values[0]), int(values[1])


def _padded_nhwc(x, pad_h, pad_w, height=None, width=None):
    """NCHW `x` as a zero-padded NHWC array (a free view when no padding is needed)."""
    n, c, h, w = x.shape
    height = h + 2 * pad_h if height is None else height
    width = w + 2 * pad_w if width is None else width
    nhwc = x.transpose(0, 2, 3, 1)
    if (height, width) == (h, w):
        return nhwc
    padded = np.zeros((n, height, width, c), dtype=x.dtype)
    padded[:, pad_h:pad_h + h, pad_w:pad_w + w, :] = nhwc
    return padded


def _crop(padded, pad_h, pad_w, height, width):
    """The (N, height, width, C) inside of an NHWC array, as contiguous memory: the ReLU
    and bias additions next to a convolution run 2-4x slower on a strided crop than the
    copy costs."""
    inside = padded[:, pad_h:pad_h + height, pad_w:pad_w + width, :]
    return inside if inside.shape == padded.shape else np.ascontiguousarray(inside)


def _im2col(padded, kh, kw, stride, out_h, out_w):
    """Every kernel window of an NHWC array as a row: (N*out_h*out_w, kh*kw*C), one copy."""
    n, _, _, c = padded.shape
    sn, sh, sw, sc = padded.strides
    windows = np.lib.stride_tricks.as_strided(
        padded, shape=(n, out_h, out_w, kh, kw, c),
        strides=(sn, sh * stride[0], sw * stride[1], sh, sw, sc), writeable=False)
    return windows.reshape(n * out_h * out_w, kh * kw * c)


def _offset_windows(padded, kh, kw, stride, out_h, out_w):
    """(i, j, view) for each kernel offset: the (N, out_h, out_w, C) pixels of `padded`
    that offset (i, j) of every kernel window covers, as a strided view."""
    rows_span, columns_span = stride[0] * (out_h - 1) + 1, stride[1] * (out_w - 1) + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, padded[:, i:i + rows_span:stride[0], j:j + columns_span:stride[1], :]


def _col2im_gemm(rows, wmat, padded_shape, kh, kw, stride, out_h, out_w):
    """The adjoint of `_im2col` after a GEMM: `_col2im(rows @ wmat)` without materialising
    the (rows, kh*kw*C) patch matrix. Each kernel offset gets its own GEMM, whose result is
    added where that offset's windows read from; the patch matrix would not fit in cache,
    these small products do."""
    n, _, _, c = padded_shape
    taps = wmat.reshape(wmat.shape[0], kh, kw, c)
    padded = np.zeros(padded_shape, dtype=rows.dtype)
    for i, j, window in _offset_windows(padded, kh, kw, stride, out_h, out_w):
        window += (rows @ taps[:, i, j, :]).reshape(n, out_h, out_w, c)
    return padded


def _im2col_gemm(left, padded, kh, kw, stride, out_h, out_w):
    """`left @ _im2col(padded)` without materialising the patch matrix: one GEMM per
    kernel offset, on a copy of the windows' pixels at that offset, small enough to stay
    in cache (the whole patch matrix is kh*kw times the input)."""
    n, _, _, c = padded.shape
    product = np.empty((left.shape[0], kh, kw, c), dtype=left.dtype)
    for i, j, window in _offset_windows(padded, kh, kw, stride, out_h, out_w):
        np.matmul(left, window.reshape(n * out_h * out_w, c), out=product[:, i, j, :])
    return product.reshape(left.shape[0], kh * kw * c)


def _weight_matrix(weight):
    """(A, B, kh, kw) weights as an (A, kh*kw*B) matrix matching the patch layout."""
    a, b, kh, kw = weight.shape
    return weight.transpose(0, 2, 3, 1).reshape(a, kh * kw * b)


def _matrix_to_weight(matrix, shape):
    a, b, kh, kw = shape
    return matrix.reshape(a, kh, kw, b).transpose(0, 3, 1, 2)


def _check_conv_input(name, x, weight, in_channels):
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{name}: expected input of shape (N, {in_channels}, H, W) for weight "
                         f"{weight.shape}, got {x.shape}")
    check_float(name, x, weight)


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D cross-correlation as PyTorch's: weight (out_channels, in_channels, kh, kw)."""
    x = as_tensor(x, weight)
    _check_conv_input("conv2d", x, weight, weight.shape[1])
    stride, (ph, pw) = pair(stride, "stride", 1), pair(padding, "padding")
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    out_h, out_w = (h + 2 * ph - kh) // stride[0] + 1, (w + 2 * pw - kw) // stride[1] + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"conv2d: input {x.shape} is smaller than kernel {(kh, kw)} "
                         f"with padding {(ph, pw)}")
    padded = _padded_nhwc(x.data, ph, pw)
    padded_shape = padded.shape
    wmat = _weight_matrix(weight.data)
    out = _im2col(padded, kh, kw, stride, out_h, out_w) @ wmat.T
    del padded  # nor the patch matrix: backward pads x again, for the weight gradient
    if bias is not None:
        out += bias.data

    def backward(g):
        g2 = g.transpose(0, 2, 3, 1).reshape(-1, o)
        gx = gw = None
        if x.requires_grad:
            grad_padded = _col2im_gemm(g2, wmat, padded_shape, kh, kw, stride, out_h, out_w)
            gx = _crop(grad_padded, ph, pw, h, w).transpose(0, 3, 1, 2)
        if weight.requires_grad:
            padded = _padded_nhwc(x.data, ph, pw)
            gw = _matrix_to_weight(_im2col_gemm(g2.T, padded, kh, kw, stride, out_h, out_w),
                                   weight.shape)
        if bias is None:
            return gx, gw
        return gx, gw, (column_sums(g2) if bias.requires_grad else None)
    parents = (x, weight) if bias is None else (x, weight, bias)
    out = out.reshape(n, out_h, out_w, o).transpose(0, 3, 1, 2)
    return Tensor._make(out, parents, backward, "conv2d")


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """The adjoint of conv2d as PyTorch's: weight (in_channels, out_channels, kh, kw)."""
    x = as_tensor(x, weight)
    _check_conv_input("conv_transpose2d", x, weight, weight.shape[0])
    stride, (ph, pw) = pair(stride, "stride", 1), pair(padding, "padding")
    oph, opw = pair(output_padding, "output_padding")
    if oph >= stride[0] or opw >= stride[1]:
        raise ValueError(f"conv_transpose2d: output_padding {(oph, opw)} must be smaller than "
                         f"stride {stride}")
    n, cin, h, w = x.shape
    _, cout, kh, kw = weight.shape
    full_h, full_w = (h - 1) * stride[0] + kh + oph, (w - 1) * stride[1] + kw + opw
    out_h, out_w = full_h - 2 * ph, full_w - 2 * pw
    if out_h < 1 or out_w < 1:
        raise ValueError(f"conv_transpose2d: padding {(ph, pw)} leaves no output for input "
                         f"{x.shape} and kernel {(kh, kw)}")
    rows = x.data.transpose(0, 2, 3, 1).reshape(n * h * w, cin)
    wmat = _weight_matrix(weight.data)
    full = _col2im_gemm(rows, wmat, (n, full_h, full_w, cout), kh, kw, stride, h, w)
    out = _crop(full, ph, pw, out_h, out_w)
    if bias is not None:
        out += bias.data

    def backward(g):
        padded = _padded_nhwc(g, ph, pw, full_h, full_w)
        cols = _im2col(padded, kh, kw, stride, h, w)
        gx = gw = None
        if x.requires_grad:
            gx = (cols @ wmat.T).reshape(n, h, w, cin).transpose(0, 3, 1, 2)
        if weight.requires_grad:
            gw = _matrix_to_weight(rows.T @ cols, weight.shape)
        if bias is None:
            return gx, gw
        # The padding is zeros, so the padded gradient's column sums are the bias gradient.
        return gx, gw, (column_sums(padded.reshape(-1, cout)) if bias.requires_grad else None)
    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(out.transpose(0, 3, 1, 2), parents, backward, "conv_transpose2d")
