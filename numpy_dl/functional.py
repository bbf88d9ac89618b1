"""Differentiable layer ops: linear, convolutions, normalisation, activations, loss kernels.

Convolutions work channels-last inside: the padded input is an (N, H, W, C) array whose
kernel windows are strided views, copied once into a patch matrix for a single GEMM.
Their NCHW outputs are transposed views of NHWC memory, which the next convolution reads
without another copy. The input gradient is the adjoint: one GEMM, then a sum over the
kh*kw kernel offsets, one small GEMM each (never `np.add.at`, never a loop over pixels or
samples).
"""
import numpy as np

from . import random
from .autograd import Tensor, ops
from .autograd.ops import as_tensor

relu = ops.relu
leaky_relu = ops.leaky_relu
sigmoid = ops.sigmoid
tanh = ops.tanh


def _check_float(name, *tensors):
    for t in tensors:
        if t is not None and t.dtype.kind != "f":
            raise TypeError(f"{name}: expected floating-point tensors, got {t.dtype}")


# ---------------------------------------------------------------------- linear
def linear(x, weight, bias=None):
    """y = x @ weight.T + bias, with weight of shape (out_features, in_features)."""
    x = as_tensor(x, weight)
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: expected input of shape (*, {weight.shape[1]}), got {x.shape}")
    _check_float("linear", x, weight, bias)
    out = x.data @ weight.data.T
    if bias is not None:
        out += bias.data

    def backward(g):
        g2 = g.reshape(-1, g.shape[-1])
        gx = g @ weight.data if x.requires_grad else None
        gw = gb = None
        if weight.requires_grad:  # straight into the flat gradient buffer when possible
            gw = np.matmul(g2.T, x.data.reshape(-1, x.shape[-1]),
                           out=_destination(weight, (x, bias)))
        if bias is None:
            return gx, gw
        if bias.requires_grad:
            gb = g2.sum(axis=0, out=_destination(bias, (x, weight)))
        return gx, gw, gb
    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(out, parents, backward, "linear")


def _destination(param, other_parents):
    """Where an op may compute `param`'s gradient in place: its flat-buffer slot, unless
    the same tensor is also another parent of the op, whose gradient the engine would
    write into that slot first."""
    if any(param is other for other in other_parents):
        return None
    return param.grad_destination()


# ---------------------------------------------------------------------- convolution
def _pair(value, name, minimum=0):
    """(h, w) from an int or a pair; a stride needs minimum=1 (0 would divide by zero)."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or any(int(v) < minimum for v in pair):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


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


def _im2col(padded, kh, kw, stride, out_h, out_w):
    """Every kernel window of an NHWC array as a row: (N*out_h*out_w, kh*kw*C), one copy."""
    n, _, _, c = padded.shape
    sn, sh, sw, sc = padded.strides
    windows = np.lib.stride_tricks.as_strided(
        padded, shape=(n, out_h, out_w, kh, kw, c),
        strides=(sn, sh * stride[0], sw * stride[1], sh, sw, sc), writeable=False)
    return windows.reshape(n * out_h * out_w, kh * kw * c)


def _col2im_gemm(rows, wmat, padded_shape, kh, kw, stride, out_h, out_w):
    """The adjoint of `_im2col` after a GEMM: `_col2im(rows @ wmat)` without materialising
    the (rows, kh*kw*C) patch matrix. Each kernel offset gets its own GEMM, whose result is
    added where that offset's windows read from; the patch matrix would not fit in cache,
    these small products do."""
    n, _, _, c = padded_shape
    taps = wmat.reshape(wmat.shape[0], kh, kw, c)
    padded = np.zeros(padded_shape, dtype=rows.dtype)
    rows_span, columns_span = stride[0] * (out_h - 1) + 1, stride[1] * (out_w - 1) + 1
    for i in range(kh):
        for j in range(kw):
            window = padded[:, i:i + rows_span:stride[0], j:j + columns_span:stride[1], :]
            window += (rows @ taps[:, i, j, :]).reshape(n, out_h, out_w, c)
    return padded


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
    _check_float(name, x, weight)


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D cross-correlation as PyTorch's: weight (out_channels, in_channels, kh, kw)."""
    x = as_tensor(x, weight)
    _check_conv_input("conv2d", x, weight, weight.shape[1])
    stride, (ph, pw) = _pair(stride, "stride", 1), _pair(padding, "padding")
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    out_h, out_w = (h + 2 * ph - kh) // stride[0] + 1, (w + 2 * pw - kw) // stride[1] + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"conv2d: input {x.shape} is smaller than kernel {(kh, kw)} "
                         f"with padding {(ph, pw)}")
    padded = _padded_nhwc(x.data, ph, pw)
    cols = _im2col(padded, kh, kw, stride, out_h, out_w)
    wmat = _weight_matrix(weight.data)
    out = cols @ wmat.T
    if bias is not None:
        out += bias.data

    def backward(g):
        g2 = g.transpose(0, 2, 3, 1).reshape(-1, o)
        gx = gw = None
        if x.requires_grad:
            grad_padded = _col2im_gemm(g2, wmat, padded.shape, kh, kw, stride, out_h, out_w)
            gx = grad_padded[:, ph:ph + h, pw:pw + w, :].transpose(0, 3, 1, 2)
        if weight.requires_grad:
            gw = _matrix_to_weight(g2.T @ cols, weight.shape)
        if bias is None:
            return gx, gw
        return gx, gw, (g2.sum(axis=0) if bias.requires_grad else None)
    parents = (x, weight) if bias is None else (x, weight, bias)
    out = out.reshape(n, out_h, out_w, o).transpose(0, 3, 1, 2)
    return Tensor._make(out, parents, backward, "conv2d")


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """The adjoint of conv2d as PyTorch's: weight (in_channels, out_channels, kh, kw)."""
    x = as_tensor(x, weight)
    _check_conv_input("conv_transpose2d", x, weight, weight.shape[0])
    stride, (ph, pw) = _pair(stride, "stride", 1), _pair(padding, "padding")
    oph, opw = _pair(output_padding, "output_padding")
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
    out = full[:, ph:ph + out_h, pw:pw + out_w, :]
    if bias is not None:
        out += bias.data

    def backward(g):
        cols = _im2col(_padded_nhwc(g, ph, pw, full_h, full_w), kh, kw, stride, h, w)
        gx = gw = None
        if x.requires_grad:
            gx = (cols @ wmat.T).reshape(n, h, w, cin).transpose(0, 3, 1, 2)
        if weight.requires_grad:
            gw = _matrix_to_weight(rows.T @ cols, weight.shape)
        if bias is None:
            return gx, gw
        return gx, gw, (g.sum(axis=(0, 2, 3)) if bias.requires_grad else None)
    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(out.transpose(0, 3, 1, 2), parents, backward, "conv_transpose2d")


# ---------------------------------------------------------------------- normalisation
def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=True,
               momentum=0.1, eps=1e-5):
    """Normalise over every axis but the channels (dim 1), as PyTorch's BatchNorm1d/2d.

    In training the running statistics (NumPy arrays) are updated in place, the variance
    unbiased; in eval they are used instead of the batch's.
    """
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"batch_norm: expected input of shape (N, C), (N, C, L) or "
                         f"(N, C, H, W), got {x.shape}")
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    count = x.data.size // x.shape[1]
    if training:
        if count < 2:
            raise ValueError(f"batch_norm: training needs more than one value per channel, "
                             f"got input {x.shape}")
        mean = x.data.mean(axis=axes)
        var = x.data.var(axis=axes)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * var * (count / (count - 1))
    else:
        mean, var = running_mean, running_var
    inv_std = (1 / np.sqrt(var + eps)).astype(x.dtype).reshape(shape)
    x_hat = (x.data - mean.reshape(shape).astype(x.dtype)) * inv_std
    scale = weight.data.reshape(shape) if weight is not None else np.ones(shape, x.dtype)
    out = x_hat * scale
    if bias is not None:
        out += bias.data.reshape(shape)

    def backward(g):
        g_hat = g * scale
        if training:
            gx = inv_std * (g_hat - g_hat.mean(axis=axes, keepdims=True)
                            - x_hat * (g_hat * x_hat).mean(axis=axes, keepdims=True))
        else:
            gx = g_hat * inv_std
        grads = [gx]
        if weight is not None:
            grads.append((g * x_hat).sum(axis=axes) if weight.requires_grad else None)
        if bias is not None:
            grads.append(g.sum(axis=axes) if bias.requires_grad else None)
        return grads
    parents = tuple(t for t in (x, weight, bias) if t is not None)
    return Tensor._make(out, parents, backward, "batch_norm")


# ---------------------------------------------------------------------- probabilities
def log_softmax(x, dim=-1):
    shifted = x.data - x.data.max(axis=dim, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))

    def backward(g):
        return (g - np.exp(out) * g.sum(axis=dim, keepdims=True),)
    return Tensor._make(out, (x,), backward, "log_softmax")


def softmax(x, dim=-1):
    shifted = np.exp(x.data - x.data.max(axis=dim, keepdims=True))
    out = shifted / shifted.sum(axis=dim, keepdims=True)

    def backward(g):
        return (out * (g - (g * out).sum(axis=dim, keepdims=True)),)
    return Tensor._make(out, (x,), backward, "softmax")


def dropout(x, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only)."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must lie in [0, 1], got {p}")
    if not training or p == 0:
        return x
    keep = random.generator().random(x.shape, dtype=np.float32) >= p
    mask = keep.astype(x.dtype) * np.asarray(1 / (1 - p) if p < 1 else 0, x.dtype)
    return Tensor._make(x.data * mask, (x,), lambda g: (g * mask,), "dropout")


def one_hot(labels, num_classes):
    """Float32 rows with a 1 at each label (float, so it concatenates with features)."""
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"one_hot: labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"one_hot: labels must lie in [0, {num_classes}), got "
                         f"[{labels.min()}, {labels.max()}]")
    return Tensor(np.eye(num_classes, dtype=np.float32)[labels])


# ---------------------------------------------------------------------- loss kernels
def _target_array(target, like):
    data = target.data if isinstance(target, Tensor) else np.asarray(target)
    if data.shape != like.shape:
        raise ValueError(f"target shape {data.shape} does not match input shape {like.shape}")
    return data.astype(like.dtype, copy=False)


def _with_target(x, target):
    """The op's parents: the input, and the target too when it requires a gradient (a
    target that is another model's output, as PyTorch's losses allow)."""
    return (x, target) if isinstance(target, Tensor) and target.requires_grad else (x,)


def binary_cross_entropy(p, target):
    """Elementwise BCE of probabilities; logs clamped at -100 as PyTorch does."""
    t = _target_array(target, p)
    if p.data.size and (p.data.min() < 0 or p.data.max() > 1):
        raise ValueError("binary_cross_entropy: input probabilities must lie in [0, 1]; "
                         "use BCEWithLogitsLoss for unbounded scores")
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p.data), -100)
        log_q = np.maximum(np.log1p(-p.data), -100)
    out = -(t * log_p + (1 - t) * log_q)
    parents = _with_target(p, target)

    def backward(g):
        denom = np.maximum(p.data * (1 - p.data), np.asarray(1e-12, p.dtype))
        grad_p = g * (p.data - t) / denom
        return (grad_p, g * (log_q - log_p)) if len(parents) == 2 else (grad_p,)
    return Tensor._make(out, parents, backward, "binary_cross_entropy")


def binary_cross_entropy_with_logits(x, target):
    """Elementwise BCE of logits, in the overflow-free form."""
    t = _target_array(target, x)
    out = np.maximum(x.data, 0) - x.data * t + np.log1p(np.exp(-np.abs(x.data)))
    parents = _with_target(x, target)

    def backward(g):
        grad_x = g * (ops.sigmoid(Tensor(x.data)).data - t)
        return (grad_x, -g * x.data) if len(parents) == 2 else (grad_x,)
    return Tensor._make(out, parents, backward, "binary_cross_entropy_with_logits")


def cross_entropy(logits, labels):
    """Per-sample cross-entropy of (N, C) logits against integer labels (N,)."""
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy: expected logits (N, C) and labels (N,), got "
                         f"{logits.shape} and {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"cross_entropy: labels must lie in [0, {logits.shape[1]})")
    rows = np.arange(len(labels))
    log_probs = log_softmax(Tensor(logits.data), dim=1).data
    out = -log_probs[rows, labels]

    def backward(g):
        grad = np.exp(log_probs)
        grad[rows, labels] -= 1
        return (grad * g[:, None],)
    return Tensor._make(out, (logits,), backward, "cross_entropy")
