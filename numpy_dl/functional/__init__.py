"""Differentiable layer ops, one family per module::

    linear.py         linear (writes weight gradients into the flat gradient buffer)
    conv.py           conv2d, conv_transpose2d (im2col + GEMM, channels-last inside)
    pooling.py        max_pool2d, avg_pool2d (one strided view per kernel offset)
    upsampling.py     interpolate (nearest)
    normalization.py  batch_norm, layer_norm
    embedding.py      embedding
    probability.py    softmax, log_softmax, dropout, one_hot
    loss.py           the losses with PyTorch's `reduction` (mean by default):
                      mse_loss, binary_cross_entropy(_with_logits), cross_entropy,
                      nll_loss

The elementwise activations (relu, leaky_relu, sigmoid, tanh) are autograd's own ops.
"""
from ..autograd.ops import leaky_relu, relu, sigmoid, tanh
from .conv import conv2d, conv_transpose2d
from .embedding import embedding
from .linear import linear
from .loss import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
                   mse_loss, nll_loss)
from .normalization import batch_norm, layer_norm
from .pooling import avg_pool2d, max_pool2d
from .probability import dropout, log_softmax, one_hot, softmax
from .upsampling import interpolate

__all__ = ["linear", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "interpolate",
           "batch_norm", "layer_norm", "embedding", "softmax", "log_softmax", "dropout",
           "one_hot", "binary_cross_entropy", "binary_cross_entropy_with_logits",
           "cross_entropy", "nll_loss", "mse_loss", "relu", "leaky_relu", "sigmoid", "tanh"]
