"""Parameter: a leaf Tensor that a Module registers as learnable."""
import numpy as np

from ..autograd import Tensor, is_grad_enabled
from ..autograd.tensor import as_array


class Parameter(Tensor):
    """A learnable tensor. An optimizer may give it `grad_slot`, a view into one flat
    gradient buffer, so that a first gradient lands there instead of in fresh memory and
    the whole model's gradients can be reduced or updated in a few vectorised calls.

    The slot is reused: after `zero_grad()` the next backward writes into the same memory,
    so copy `.grad` (`p.grad.copy()`) to keep it across steps."""

    def __init__(self, data, requires_grad=True):
        data = data.data if isinstance(data, Tensor) else np.asarray(data)
        if data.dtype.kind != "f":
            raise TypeError(f"Parameter needs floating-point data, got {data.dtype}")
        super().__init__(data, requires_grad=requires_grad)
        self.grad_slot = None

    def _fresh_grad(self, grad):
        slot = self.grad_slot
        if grad is slot:  # an op computed it in place (grad_destination)
            return slot
        if slot is not None and slot.shape == grad.shape:
            np.copyto(slot, grad)
            return slot
        return super()._fresh_grad(grad)

    def grad_destination(self):
        return self.grad_slot if self.grad is None and self.requires_grad else None

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def _in_place(ufunc):
    """`p *= 0.5` and its kin under no_grad, as in PyTorch: the values change where they
    live (in the optimizer's flat buffer too), so the parameter stays the object its
    module and optimizer hold. (On other tensors `+=` rebinds the name to a new tensor,
    which leaves any graph that saved the old one intact.)"""
    def apply(self, other):
        if is_grad_enabled() and (self.requires_grad or getattr(other, "requires_grad", False)):
            raise RuntimeError(f"in-place {ufunc.__name__} on a parameter while gradients are "
                               f"recorded; do it inside `with numpy_dl.no_grad():`")
        ufunc(self.data, as_array(other, self.dtype), out=self.data, casting="same_kind")
        return self
    return apply


Parameter.__iadd__ = _in_place(np.add)
Parameter.__isub__ = _in_place(np.subtract)
Parameter.__imul__ = _in_place(np.multiply)
Parameter.__itruediv__ = _in_place(np.true_divide)
