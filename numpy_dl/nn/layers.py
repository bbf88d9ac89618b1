"""Layers with PyTorch's signatures, weight layouts and default initialisation.

Each layer checks its input's shape and names itself in the error, so a user sees
"Linear(in_features=784, ...): expected input of shape (*, 784), got (128, 28, 28)"
rather than a broadcasting error from deep inside NumPy.
"""
import warnings

import numpy as np

from .. import functional as F
from ..functional.conv import pair
from ..autograd import ops
from ..autograd.tensor import input_tensor
from . import init
from .module import Module
from .parameter import Parameter


class Linear(Module):
    """`x @ weight.T + bias` for an input of shape `(*, in_features)`, as `torch.nn.Linear`:
    `weight` is (out_features, in_features), initialised as PyTorch's."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(np.empty((out_features, in_features), dtype=np.float32))
        self.bias = Parameter(np.empty(out_features, dtype=np.float32)) if bias else None
        init.default_layer_init(self.weight, self.bias)

    def forward(self, x):
        x = input_tensor(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self!r}: expected input of shape (*, {self.in_features}), "
                             f"got {x.shape}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class _ConvNd(Module):
    """What Conv2d and ConvTranspose2d share: hyper-parameters, checks and repr."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, bias,
                 weight_shape):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride, self.padding = pair(stride, "stride", 1), pair(padding, "padding")
        self.weight = Parameter(np.empty(weight_shape + self.kernel_size, dtype=np.float32))
        self.bias = Parameter(np.empty(out_channels, dtype=np.float32)) if bias else None
        init.default_layer_init(self.weight, self.bias)

    def _check(self, x):
        x = input_tensor(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.in_channels}, H, W), "
                             f"got {x.shape}")
        return x

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            text += f", output_padding={self.output_padding}"
        return text + ("" if self.bias is not None else ", bias=False")


class Conv2d(_ConvNd):
    """A 2-d convolution of (N, in_channels, H, W) inputs, as `torch.nn.Conv2d`: `weight`
    is (out_channels, in_channels, kH, kW); kernel_size, stride and padding are an int or
    a pair."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias,
                         (out_channels, in_channels))

    def forward(self, x):
        return F.conv2d(self._check(x), self.weight, self.bias, self.stride, self.padding)


class ConvTranspose2d(_ConvNd):
    """The transpose of Conv2d (the decoder's upsampling), as `torch.nn.ConvTranspose2d`:
    `weight` is (in_channels, out_channels, kH, kW), and `output_padding` adds rows and
    columns so that the output has exactly the size the matching Conv2d started from."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias,
                         (in_channels, out_channels))
        self.output_padding = pair(output_padding, "output_padding")

    def forward(self, x):
        return F.conv_transpose2d(self._check(x), self.weight, self.bias, self.stride,
                                  self.padding, self.output_padding)


class ReLU(Module):
    """max(x, 0), elementwise, as `torch.nn.ReLU`."""

    def forward(self, x):
        return ops.relu(input_tensor(x))


class LeakyReLU(Module):
    """x where positive, else `negative_slope * x`, as `torch.nn.LeakyReLU`."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return ops.leaky_relu(input_tensor(x), self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """1 / (1 + exp(-x)), elementwise, as `torch.nn.Sigmoid`: the autoencoders' last layer,
    which puts their outputs in [0, 1]."""

    def forward(self, x):
        return ops.sigmoid(input_tensor(x))


class Tanh(Module):
    """The hyperbolic tangent, elementwise, as `torch.nn.Tanh`."""

    def forward(self, x):
        return ops.tanh(input_tensor(x))


class Identity(Module):
    """Returns its input: a placeholder where a model's structure has an optional layer."""

    def forward(self, x):
        return x


class Dropout(Module):
    """In training mode, zeroes each element with probability `p` and scales the others
    by 1/(1-p); in evaluation mode, returns its input. As `torch.nn.Dropout`."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must lie in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(input_tensor(x), self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class _BatchNorm(Module):
    expected_dims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, dtype=np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype=np.float32)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
            self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def forward(self, x):
        x = input_tensor(x)
        if x.ndim not in self.expected_dims or x.shape[1] != self.num_features:
            layout = " or ".join(f"(N, {self.num_features}{', L' * (d == 3)}{', H, W' * (d == 4)})"
                                 for d in self.expected_dims)
            raise ValueError(f"{self!r}: expected input of shape {layout}, got {x.shape}")
        use_batch_stats = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
        running = (self.running_mean, self.running_var) if self.track_running_stats else (None, None)
        momentum = self.momentum
        if momentum is None:  # PyTorch's cumulative moving average
            momentum = 1.0 / max(int(self.num_batches_tracked), 1) if self.track_running_stats else 0.0
        return F.batch_norm(x, *running, self.weight, self.bias, use_batch_stats,
                            momentum, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs over each channel, as
    `torch.nn.BatchNorm1d`: batch statistics in training mode, the running ones (buffers,
    saved in state_dict) in evaluation mode."""

    expected_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs over each channel, as
    `torch.nn.BatchNorm2d`: batch statistics in training mode, the running ones (buffers,
    saved in state_dict) in evaluation mode."""

    expected_dims = (4,)


class Flatten(Module):
    """Merges dimensions `start_dim` to `end_dim` into one, as `torch.nn.Flatten`: by
    default (N, C, H, W) becomes (N, C*H*W)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        x = input_tensor(x)
        start, end = self.start_dim % x.ndim, self.end_dim % x.ndim
        shape = x.shape[:start] + (int(np.prod(x.shape[start:end + 1])),) + x.shape[end + 1:]
        return ops.reshape(x, shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Splits dimension `dim` into `unflattened_size`, as `torch.nn.Unflatten`: the inverse
    of Flatten in a decoder, (N, C*H*W) back to (N, C, H, W)."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x):
        x = input_tensor(x)
        dim = self.dim % x.ndim
        if x.shape[dim] != int(np.prod(self.unflattened_size)):
            raise ValueError(f"{self!r}: dim {self.dim} of input {x.shape} has {x.shape[dim]} "
                             f"elements, expected {int(np.prod(self.unflattened_size))}")
        return ops.reshape(x, x.shape[:dim] + self.unflattened_size + x.shape[dim + 1:])

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class _SoftmaxNd(Module):
    """What Softmax and LogSoftmax share: the dim, and PyTorch's legacy choice when it is
    None (dim 0 for 0-, 1- and 3-d inputs, else 1), with PyTorch's warning."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def _dim(self, x):
        if self.dim is not None:
            return self.dim
        warnings.warn(f"Implicit dimension choice for {type(self).__name__} has been "
                      f"deprecated. Change the call to include dim=X as an argument.",
                      UserWarning, stacklevel=3)
        return 0 if x.ndim in (0, 1, 3) else 1

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(_SoftmaxNd):
    """exp(x) / sum(exp(x)) along `dim`, as `torch.nn.Softmax`."""

    def forward(self, x):
        x = input_tensor(x)
        return F.softmax(x, self._dim(x))


class LogSoftmax(_SoftmaxNd):
    """log(softmax(x)) along `dim`, computed stably, as `torch.nn.LogSoftmax`."""

    def forward(self, x):
        x = input_tensor(x)
        return F.log_softmax(x, self._dim(x))


class LayerNorm(Module):
    """Normalises each sample over its last dimensions (`normalized_shape`), then scales
    and shifts, as `torch.nn.LayerNorm`; the same in training and evaluation mode."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) \
            else normalized_shape
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self.weight = self.bias = None
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=np.float32))
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, dtype=np.float32))

    def forward(self, x):
        return F.layer_norm(input_tensor(x), self.normalized_shape, self.weight, self.bias,
                            self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class Embedding(Module):
    """A table of `num_embeddings` learnable rows of size `embedding_dim`, initialised
    from N(0, 1) with the `padding_idx` row zero, as PyTorch's."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None):
        super().__init__()
        if max_norm is not None:
            raise ValueError("Embedding: max_norm is not supported; expected max_norm=None")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if padding_idx is not None:
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"Embedding: padding_idx must lie in "
                                 f"[{-self.num_embeddings}, {self.num_embeddings}), got "
                                 f"{padding_idx}")
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        self.weight = Parameter(np.empty((self.num_embeddings, self.embedding_dim), np.float32))
        init.normal_(self.weight)
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0

    def forward(self, indices):
        return F.embedding(indices, self.weight, self.padding_idx)

    def extra_repr(self):
        padding = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{padding}"
