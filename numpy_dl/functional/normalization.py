"""Batch normalisation (over every axis but the channels) and layer normalisation (over
each sample's last dims)."""
import numpy as np

from ..autograd import Tensor


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
        gx = _standardized_grad(g_hat, x_hat, inv_std, axes) if training else g_hat * inv_std
        return [gx] + _affine_grads(g, x_hat, weight, bias, axes)
    parents = tuple(t for t in (x, weight, bias) if t is not None)
    return Tensor._make(out, parents, backward, "batch_norm")


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise each sample over its last len(normalized_shape) dims (biased variance),
    then scale and shift elementwise, as `torch.nn.functional.layer_norm`."""
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) \
        else tuple(normalized_shape)
    if not shape:
        raise ValueError("layer_norm: normalized_shape must name at least one dim, got ()")
    if len(shape) > x.ndim or x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(f"layer_norm: expected input of shape (*, {', '.join(map(str, shape))}), "
                         f"got {x.shape}")
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None and param.shape != shape:
            raise ValueError(f"layer_norm: {name} must have the normalized shape {shape}, "
                             f"got {param.shape}")
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    mean = x.data.mean(axis=axes, keepdims=True)
    centered = x.data - mean
    inv_std = 1 / np.sqrt((centered * centered).mean(axis=axes, keepdims=True) + eps)
    x_hat = centered * inv_std.astype(x.dtype)
    out = x_hat * weight.data if weight is not None else x_hat
    if bias is not None:
        out = out + bias.data
    leading = tuple(range(x.ndim - len(shape)))

    def backward(g):
        g_hat = g * weight.data if weight is not None else g
        gx = _standardized_grad(g_hat, x_hat, inv_std, axes).astype(x.dtype, copy=False)
        return [gx] + _affine_grads(g, x_hat, weight, bias, leading)
    parents = tuple(t for t in (x, weight, bias) if t is not None)
    return Tensor._make(out, parents, backward, "layer_norm")


def _standardized_grad(g_hat, x_hat, inv_std, axes):
    """The gradient through x_hat = (x - mean) * inv_std, mean and variance taken over
    `axes` of x itself, given the gradient g_hat of x_hat."""
    return inv_std * (g_hat - g_hat.mean(axis=axes, keepdims=True)
                      - x_hat * (g_hat * x_hat).mean(axis=axes, keepdims=True))


def _affine_grads(g, x_hat, weight, bias, axes):
    """The gradients of the weight and bias present in out = x_hat * weight + bias, summed
    over the `axes` they are broadcast along (None for one that needs none)."""
    grads = []
    if weight is not None:
        grads.append((g * x_hat).sum(axis=axes) if weight.requires_grad else None)
    if bias is not None:
        grads.append(g.sum(axis=axes) if bias.requires_grad else None)
    return grads
