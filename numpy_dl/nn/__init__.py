"""Layers and containers with PyTorch's names, signatures and parameter layouts.

As in PyTorch, `nn.functional` and the loss classes (`nn.MSELoss`, ...) are here too; the
losses live in numpy_dl.loss."""
from ..loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, KLDivergenceLoss, MSELoss,
                    NLLLoss)
from . import functional, init, utils
from .containers import ModuleList, Sequential
from .layers import (BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, Embedding,
                     Flatten, Identity, LayerNorm, LeakyReLU, Linear, LogSoftmax, ReLU, Sigmoid,
                     Softmax, Tanh, Unflatten)
from .module import Module
from .parameter import Parameter
from .pooling import AvgPool2d, MaxPool2d, Upsample

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "Linear", "Conv2d",
           "ConvTranspose2d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Dropout", "BatchNorm1d",
           "BatchNorm2d", "LayerNorm", "Embedding", "Softmax", "LogSoftmax", "MaxPool2d",
           "AvgPool2d", "Upsample", "Flatten", "Unflatten", "Identity", "init", "utils", "functional",
           "MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss",
           "KLDivergenceLoss"]
