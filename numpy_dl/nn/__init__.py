"""Layers and containers with PyTorch's names, signatures and parameter layouts."""
from . import init, utils
from .containers import ModuleList, Sequential
from .layers import (BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, Flatten,
                     Identity, LeakyReLU, Linear, ReLU, Sigmoid, Tanh, Unflatten)
from .module import Module
from .parameter import Parameter

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "Linear", "Conv2d",
           "ConvTranspose2d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Dropout", "BatchNorm1d",
           "BatchNorm2d", "Flatten", "Unflatten", "Identity", "init", "utils"]
