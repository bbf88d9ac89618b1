"""Parameter: a leaf Tensor that a Module registers as learnable."""
import numpy as np

from ..autograd import Tensor, is_grad_enabled
from ..autograd.tensor import as_array


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
        if self.flat_group is not None:
            self.flat_group.settle()
        return self.unsettled_grad

    @grad.setter
    def grad(self, value):
        self.unsettled_grad = value

    def __getstate__(self):
        """Copies and pickles take the gradient as it truly is and no link to the
        optimizer's buffers (a copy's views would no longer alias them)."""
        return dict(vars(self), unsettled_grad=self.grad, flat_group=None)

    def __setstate__(self, state):
        if "grad" in state:  # pickled before `grad` became a property
            state["unsettled_grad"] = state.pop("grad")
        vars(self).update(state)
        vars(self).setdefault("flat_group", None)

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
