"""Differentiable layer ops, one family per module:

    linear.py         linear (writes weight gradients into the flat gradient buffer)
    conv.py           conv2d, conv_transpose2d (im2col + GEMM, channels-last inside)
    normalization.py  batch_norm
    probability.py    softmax, log_softmax, dropout, one_hot
    loss.py           the kernels of the losses: binary_cross_entropy(_with_logits),
                      cross_entropy

The elementwise activations (relu, leaky_relu, sigmoid, tanh) are autograd's own ops.
"""
from ..autograd.ops import leaky_relu, relu, sigmoid, tanh
from .conv import conv2d, conv_transpose2d
from .linear import linear
from .loss import binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy
from .normalization import batch_norm
from .probability import dropout, log_softmax, one_hot, softmax

__all__ = ["linear", "conv2d", "conv_transpose2d", "batch_norm", "softmax", "log_softmax",
           "dropout", "one_hot", "binary_cross_entropy", "binary_cross_entropy_with_logits",
           "cross_entropy", "relu", "leaky_relu", "sigmoid", "tanh"]
