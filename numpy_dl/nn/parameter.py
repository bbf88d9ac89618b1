"""Parameter: a leaf Tensor that a Module registers as learnable."""
import numpy as np

from ..autograd import Tensor


class Parameter(Tensor):
    """A learnable tensor. An optimizer may give it `grad_slot`, a view into one flat
    gradient buffer, so that a first gradient lands there instead of in fresh memory and
    the whole model's gradients can be reduced or updated in a few vectorised calls.

    The slot is reused: after `zero_grad()` the next backward writes into the same memory,
    so copy `.grad` (`p.grad.copy()`) to keep it across steps; after a distributed step,
    read `.grad` anew rather than through an array kept from before it (see `grad`)."""

    def __init__(self, data, requires_grad=True):
        data = data.data if isinstance(data, Tensor) else np.asarray(data)
        if data.dtype.kind != "f":
            raise TypeError(f"Parameter needs floating-point data, got {data.dtype}")
        self.flat_group = None  # the optim.flat.FlatGroup that holds grad_slot, if any
        super().__init__(data, requires_grad=requires_grad)
        self.grad_slot = None

    @property
    def grad(self):
        """The gradient, with a scale its flat buffer still owes applied first (see
        optim/flat.py: a distributed optimizer defers its division by the rank count)."""
        if self.flat_group is not None and self.flat_group.pending_scale != 1:
            self.flat_group.settle()
        return self.unsettled_grad

    @grad.setter
    def grad(self, value):
        self.unsettled_grad = value

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
