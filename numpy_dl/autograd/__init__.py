"""Autograd: the Tensor (tensor.py, which lists what a Tensor can do), its differentiable
ops (ops.py), the creation functions (creation.py), and the switch that turns recording
off (grad_mode.py)."""
from . import creation, ops
from .grad_mode import is_grad_enabled, no_grad
from .tensor import Tensor, unbroadcast

__all__ = ["Tensor", "no_grad", "is_grad_enabled", "ops", "creation", "unbroadcast"]
