"""2-D convolution and transposed convolution, im2col + GEMM.

Convolutions work channels-last inside: the input is an (N, H, W, C) array whose kernel
windows are strided views, copied into a patch matrix for a GEMM. Where zero padding is
a large share of the windows, the outputs are grouped by the taps that read real pixels
and each group gets its own patch matrix and GEMM, so the padding is never multiplied.
Patch matrices are built a run of samples at a time within a fixed workspace
(`PATCH_WORKSPACE_BYTES`) and live only for their GEMMs: the forward's does not wait for
backward, which builds the weight gradient's again (kh*kw times the input, it would be
the largest thing a training step keeps), and a larger batch does not make them larger.
Their NCHW outputs are transposed views of NHWC memory, which the next convolution reads
without another copy. The input gradient is the adjoint: a sum over the kh*kw kernel
taps, one small GEMM each (one for all taps when there are few channels), added where
the tap reads (never `np.add.at`, never a loop over pixels or samples).
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


def _padded_nhwc(x, pad_h, pad_w):
    """NCHW `x` as a zero-padded NHWC array (a free view when no padding is needed)."""
    n, c, h, w = x.shape
    nhwc = x.transpose(0, 2, 3, 1)
    if pad_h == pad_w == 0:
        return nhwc
    padded = np.zeros((n, h + 2 * pad_h, w + 2 * pad_w, c), dtype=x.dtype)
    padded[:, pad_h:pad_h + h, pad_w:pad_w + w, :] = nhwc
    return padded


def _border_runs(size, pad, kernel, stride, out_size):
    """Along one axis, runs (first, stop, tap_first, tap_stop) of consecutive output
    positions whose kernel taps inside the input [0, size) are the same: with zero padding
    only the outputs at the borders lose taps, so an axis has one to three runs."""
    runs = []
    for position in range(out_size):
        taps = (max(0, pad - position * stride), min(kernel, size + pad - position * stride))
        if runs and runs[-1][2:] == taps:
            runs[-1] = (runs[-1][0], position + 1) + taps
        else:
            runs.append((position, position + 1) + taps)
    return runs


def _border_classes(nhwc, kh, kw, stride, pad, out_h, out_w):
    """A convolution's kernel windows over NHWC `nhwc`, zero-padded by `pad`, grouped into
    blocks of outputs that use the same taps: for each block, yield its output rows and
    columns, its taps (i, j) as slices, and its patch matrix (one row per output, the
    taps' pixels in the row), one copy. The taps that would read padding are left out, so
    the GEMMs skip them: 31% of the multiply-adds of a stride-2 3x3 convolution of a 7x7
    input, whose forward then takes 20% less time. Where padding is a smaller share (9%
    of a 14x14 input's), the per-block copies cost what the skipped taps save, so the input
    is padded instead and the windows form a single block, as in plain im2col. With fewer
    than 16 channels a row's pixels come in runs too short to copy fast (3 numbers for a
    3x3 kernel over one channel: three times slower), so the copy is made in tap-major
    order, along the output columns, and the patch matrix is its transpose (F order)."""
    row_runs = _border_runs(nhwc.shape[1], pad[0], kh, stride[0], out_h)
    column_runs = _border_runs(nhwc.shape[2], pad[1], kw, stride[1], out_w)
    taps_used = (sum((r1 - r0) * (i1 - i0) for r0, r1, i0, i1 in row_runs)
                 * sum((c1 - c0) * (j1 - j0) for c0, c1, j0, j1 in column_runs))
    if taps_used > 0.8 * out_h * out_w * kh * kw:
        nhwc = _padded_nhwc(nhwc.transpose(0, 3, 1, 2), pad[0], pad[1])
        pad = (0, 0)
        row_runs, column_runs = [(0, out_h, 0, kh)], [(0, out_w, 0, kw)]
    n, c = nhwc.shape[0], nhwc.shape[3]
    sn, sh, sw, sc = nhwc.strides
    for r0, r1, i0, i1 in row_runs:
        for c0, c1, j0, j1 in column_runs:
            outputs = n * (r1 - r0) * (c1 - c0)
            if i0 >= i1 or j0 >= j1:  # windows entirely in the padding
                patches = np.zeros((outputs, 0), dtype=nhwc.dtype)
            else:
                first = nhwc[:, r0 * stride[0] + i0 - pad[0]:, c0 * stride[1] + j0 - pad[1]:, :]
                windows = np.lib.stride_tricks.as_strided(
                    first, shape=(n, r1 - r0, c1 - c0, i1 - i0, j1 - j0, c),
                    strides=(sn, sh * stride[0], sw * stride[1], sh, sw, sc), writeable=False)
                if c < 16:  # tap by tap: runs along the output columns, not c numbers
                    patches = windows.transpose(3, 4, 5, 0, 1, 2).reshape(-1, outputs).T
                else:
                    patches = windows.reshape(outputs, -1)
            yield slice(r0, r1), slice(c0, c1), slice(i0, i1), slice(j0, j1), patches


# The most memory one convolution's patch matrices may take at a time. Beyond it the
# batch is taken a run of samples at a time, so a larger batch does not grow this
# workspace; runs of 8 MiB are still GEMMs of thousands of rows (a ConvVAE step at batch
# 512 took 314 ms with this limit, 316 without one).
PATCH_WORKSPACE_BYTES = 8 << 20


def _sample_runs(n, bytes_per_sample):
    """The batch of `n` as slices, runs of samples whose `bytes_per_sample` each fit in
    PATCH_WORKSPACE_BYTES together (one sample at least)."""
    run = max(1, PATCH_WORKSPACE_BYTES // max(1, bytes_per_sample))
    return [slice(first, first + run) for first in range(0, n, run)]


def _convolve(nhwc, kernel, stride, pad, out_h, out_w, taps=None, left=None):
    """The two products of a convolution's patch matrix over NHWC `nhwc` zero-padded by
    `pad`, one GEMM each per border class and run of samples: with `taps` (O, kh, kw, C),
    the (N, out_h, out_w, O) cross-correlation; with `left` (N, out_h, out_w, A), the
    (A, kh, kw, C) sum of left's rows times their patches (a weight gradient). Returns
    both, None for the one not asked for."""
    n, c = nhwc.shape[0], nhwc.shape[3]
    kh, kw = kernel
    out = None  # a single block's result becomes `out` itself, without a copy
    if taps is not None:
        out_shape = (n, out_h, out_w, len(taps))
        if n == 0:  # no runs, no blocks
            out = np.empty(out_shape, dtype=np.result_type(nhwc, taps))
    product = None if left is None else np.zeros((left.shape[3], kh, kw, c), dtype=nhwc.dtype)
    for samples in _sample_runs(n, out_h * out_w * kh * kw * c * nhwc.itemsize):
        for rows, cols, taps_i, taps_j, patches in _border_classes(
                nhwc[samples], kh, kw, stride, pad, out_h, out_w):
            if taps is not None:
                result = (patches @ taps[:, taps_i, taps_j, :].reshape(len(taps), -1).T
                          ).reshape(-1, rows.stop - rows.start, cols.stop - cols.start, len(taps))
                if result.shape == out_shape:
                    out = result
                else:
                    if out is None:
                        out = np.empty(out_shape, dtype=result.dtype)
                    out[samples, rows, cols, :] = result
            if product is not None:
                block = product[:, taps_i, taps_j, :]
                left_rows = left[samples, rows, cols, :].reshape(len(patches), -1)
                if patches.flags.f_contiguous:  # tap-major patches: BLAS's fast orientation
                    block += (patches.T @ left_rows).T.reshape(block.shape)
                else:
                    block += (left_rows.T @ patches).reshape(block.shape)
    return out, product


def _tap_range(tap, pad, stride, windows, size):
    """Along one axis, for kernel tap `tap`: the windows [first, stop) of the `windows`
    whose tap lands inside the unpadded input [0, size), and where the first one lands."""
    first = max(0, -((tap - pad) // stride))
    stop = min(windows, (size - 1 + pad - tap) // stride + 1)
    return first, stop, first * stride + tap - pad


def _col2im_gemm(grads, taps, out_shape, stride, pad):
    """The adjoint of a convolution's patch matrix after a GEMM: over every window of the
    NHWC grid `grads` (N, P, Q, A) and kernel tap (i, j), grads' row times taps[:, i, j, :]
    ((A, kh, kw, C) taps), added into the (N, H, W, C) `out_shape` where that tap reads;
    what lands in the padding is left out. Each tap gets its own GEMM, over only the
    windows whose tap lands inside: the patch matrix, kh*kw times the input, would not fit
    in cache; these products do. With fewer than 16 channels a tap's GEMM is a thin
    matrix-vector product, slower than one GEMM of all taps at once, which is taken
    instead, a run of samples at a time within PATCH_WORKSPACE_BYTES."""
    n, p, q, a = grads.shape
    _, kh, kw, c = taps.shape
    out = np.zeros(out_shape, dtype=grads.dtype)
    all_at_once = c < 16
    runs = [slice(None)]
    if all_at_once:
        runs = _sample_runs(n, p * q * kh * kw * c * grads.itemsize)
    for samples in runs:
        if all_at_once:
            products = (grads[samples].reshape(-1, a) @ taps.reshape(a, -1)).reshape(
                -1, p, q, kh, kw, c)
        for i in range(kh):
            r0, r1, first_row = _tap_range(i, pad[0], stride[0], p, out_shape[1])
            for j in range(kw):
                c0, c1, first_col = _tap_range(j, pad[1], stride[1], q, out_shape[2])
                if r0 >= r1 or c0 >= c1:
                    continue
                last_row = first_row + (r1 - r0 - 1) * stride[0]
                last_col = first_col + (c1 - c0 - 1) * stride[1]
                window = out[samples, first_row:last_row + 1:stride[0],
                             first_col:last_col + 1:stride[1], :]
                if all_at_once:
                    window += products[:, r0:r1, c0:c1, i, j, :]
                else:
                    rows_inside = grads[samples, r0:r1, c0:c1, :].reshape(-1, a)
                    window += (rows_inside @ taps[:, i, j, :]).reshape(window.shape)
    return out


def _weight_matrix(weight):
    """(A, B, kh, kw) weights as an (A, kh*kw*B) matrix matching the patch layout."""
    a, b, kh, kw = weight.shape
    return weight.transpose(0, 2, 3, 1).reshape(a, kh * kw * b)


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
    wmat = _weight_matrix(weight.data)
    out, _ = _convolve(x.data.transpose(0, 2, 3, 1), (kh, kw), stride, (ph, pw), out_h, out_w,
                       taps=wmat.reshape(o, kh, kw, c))
    if bias is not None:
        out += bias.data

    def backward(g):
        g_nhwc = np.ascontiguousarray(g.transpose(0, 2, 3, 1))
        g2 = g_nhwc.reshape(-1, o)
        gx = gw = None
        if x.requires_grad:
            gx = _col2im_gemm(g_nhwc, wmat.reshape(o, kh, kw, c), (n, h, w, c), stride,
                              (ph, pw)).transpose(0, 3, 1, 2)
        if weight.requires_grad:
            _, gw = _convolve(x.data.transpose(0, 2, 3, 1), (kh, kw), stride, (ph, pw), out_h,
                              out_w, left=g_nhwc)
            gw = gw.transpose(0, 3, 1, 2)
        if bias is None:
            return gx, gw
        return gx, gw, (column_sums(g2) if bias.requires_grad else None)
    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(out.transpose(0, 3, 1, 2), parents, backward, "conv2d")


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
    wmat = _weight_matrix(weight.data)
    out = _col2im_gemm(np.ascontiguousarray(x.data.transpose(0, 2, 3, 1)),
                       wmat.reshape(cin, kh, kw, cout), (n, out_h, out_w, cout), stride, (ph, pw))
    if bias is not None:
        out += bias.data

    def backward(g):
        # x's grid is the output grid of the convolution of g (padded by ph, pw; the
        # bottom and right padding follow from x's size), whose taps are the weight's.
        g_nhwc = g.transpose(0, 2, 3, 1)
        gx, gw = _convolve(g_nhwc, (kh, kw), stride, (ph, pw), h, w,
                           taps=wmat.reshape(cin, kh, kw, cout) if x.requires_grad else None,
                           left=x.data.transpose(0, 2, 3, 1) if weight.requires_grad else None)
        gx = None if gx is None else gx.transpose(0, 3, 1, 2)
        gw = None if gw is None else gw.transpose(0, 3, 1, 2)
        if bias is None:
            return gx, gw
        return gx, gw, (column_sums(g_nhwc.reshape(-1, cout)) if bias.requires_grad else None)
    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(out.transpose(0, 3, 1, 2), parents, backward, "conv_transpose2d")
