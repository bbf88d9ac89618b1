"""Weight initialisers with PyTorch's names, formulas and defaults, drawn from numpy_dl's
seeded generator so that `ndl.manual_seed` makes a model's start repeatable."""
import math

import numpy as np

from .. import random


def calculate_fan_in_and_fan_out(tensor):
    """PyTorch's rule: dim 1 is fan-in, dim 0 fan-out, times the kernel's size.

    For ConvTranspose2d, whose weight is (in, out, kh, kw), this makes fan-in out*kh*kw,
    exactly as PyTorch initialises it."""
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a tensor of at least 2 dims, got {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def uniform_(tensor, a=0.0, b=1.0):
    """Fill `tensor` in place from the uniform distribution on [a, b); returns it."""
    tensor.data[...] = random.generator().uniform(a, b, size=tensor.shape)
    return tensor


def normal_(tensor, mean=0.0, std=1.0):
    """Fill `tensor` in place from the normal distribution of mean `mean` and standard
    deviation `std`; returns it."""
    tensor.data[...] = random.generator().normal(mean, std, size=tensor.shape)
    return tensor


def zeros_(tensor):
    """Fill `tensor` with 0 in place; returns it."""
    tensor.data[...] = 0
    return tensor


def ones_(tensor):
    """Fill `tensor` with 1 in place; returns it."""
    tensor.data[...] = 1
    return tensor


def calculate_gain(nonlinearity, param=None):
    """PyTorch's recommended gain for `nonlinearity`: 'linear', 'conv2d',
    'conv_transpose2d', 'sigmoid', 'tanh', 'relu', or 'leaky_relu' of slope `param`."""
    if nonlinearity in ("linear", "conv2d", "conv_transpose2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He initialisation, in place: uniform on [-bound, bound], bound = gain * sqrt(3 / fan),
    as `torch.nn.init.kaiming_uniform_`; returns `tensor`."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return uniform_(tensor, -bound, bound)


def xavier_uniform_(tensor, gain=1.0):
    """Glorot initialisation, in place: uniform on [-bound, bound], bound = gain *
    sqrt(6 / (fan_in + fan_out)), as `torch.nn.init.xavier_uniform_`; returns `tensor`."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def default_layer_init(weight, bias):
    """What PyTorch's Linear and Conv layers do in reset_parameters()."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound)
