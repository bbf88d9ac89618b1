"""Module: the base of every layer and model, with PyTorch's registration and naming.

Assigning a Parameter or a Module to an attribute registers it, so `named_parameters()`
and `state_dict()` produce PyTorch's dotted names (`encoder.0.weight`) and checkpoints
line up with what PyTorch users know. Buffers (BatchNorm's running statistics) are
NumPy arrays registered with `register_buffer`.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from ..autograd import Tensor
from ..autograd.tensor import Conversions, to_arguments
from .parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module(Conversions):
    """The base of every layer and model, as `torch.nn.Module`: a subclass calls
    `super().__init__()`, assigns its layers and Parameters as attributes (which registers
    them under those names) and defines `forward`; `module(x)` calls `forward(x)`."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        """Register Parameters and Modules, as PyTorch: a name that holds one takes only
        another of its kind or None, so that `layer.weight = layer.weight * 2` cannot
        silently drop a parameter from the model and its optimizer."""
        if self.__dict__.get("_parameters") is None:
            if isinstance(value, (Parameter, Module)):
                raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                     f"assigning the parameter or module {name!r}")
        elif value is None:
            self._forget(name)
        elif isinstance(value, (Parameter, Module)):
            registry = self._parameters if isinstance(value, Parameter) else self._modules
            self._forget(name, keep=registry)  # a replacement keeps its place in the order
            registry[name] = value
        elif name in self._parameters or name in self._modules:
            kind = "parameter" if name in self._parameters else "child module"
            expected = "a Parameter" if name in self._parameters else "a Module"
            raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} as "
                            f"{kind} {name!r}; expected {expected} or None (to change a "
                            f"parameter's values, work in place inside numpy_dl.no_grad())")
        elif name in self._buffers:
            if isinstance(value, (Tensor, np.generic)):  # np.generic: arithmetic on a 0-d one
                value = np.asarray(value.data if isinstance(value, Tensor) else value)
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} "
                                f"as buffer {name!r}; expected a NumPy array, a Tensor or None")
        object.__setattr__(self, name, value)

    def _forget(self, name, keep=None):
        for registry in (self._parameters, self._modules, self._buffers):
            if registry is not keep:
                registry.pop(name, None)

    def __delattr__(self, name):
        self._forget(name)
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """A persistent non-learnable array, saved in state_dict (e.g. running statistics)."""
        object.__setattr__(self, name, array)
        self._buffers[name] = True

    def register_parameter(self, name, param):
        """Register the Parameter `param` under `name`, as assigning it as an attribute does."""
        setattr(self, name, param)

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        """The module's computation, which every subclass defines; call the module itself,
        `module(x)`, to run it."""
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ traversal
    def named_children(self):
        """(name, module) of each direct child, in the order they were assigned."""
        return iter(self._modules.items())

    def children(self):
        """Each direct child module, in the order they were assigned."""
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        """Every module below and including this one, each once, with its dotted name."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items()]
            stack.extend(reversed(children))

    def modules(self):
        """Every module below and including this one, each once."""
        return (module for _, module in self.named_modules())

    def named_parameters(self, prefix="", recurse=True):
        """Parameters with dotted names, in registration order, shared ones only once."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, param in module._parameters.items():
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self, recurse=True):
        """Every parameter, its children's too unless `recurse=False`, shared ones once: what
        an optimizer takes."""
        return (param for _, param in self.named_parameters(recurse=recurse))

    def named_buffers(self):
        """(dotted name, array) of every buffer below and including this module, such as
        BatchNorm's running statistics."""
        for module_name, module in self.named_modules():
            for name in module._buffers:
                yield (f"{module_name}.{name}" if module_name else name), getattr(module, name)

    # ------------------------------------------------------------------ modes
    def train(self, mode=True):
        """Put this module and every one below it in training mode (or evaluation mode,
        `mode=False`), which Dropout and BatchNorm follow; returns the module."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        """`train(False)`: evaluation mode, for inference; returns the module."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze every parameter, e.g. a pretrained encoder."""
        for param in self.parameters():
            param.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none=True):
        """Clear every parameter's gradient: to None, as PyTorch by default, or to zeros."""
        for param in self.parameters():
            param.zero_grad(set_to_none)

    # ------------------------------------------------------------------ device and dtype
    def to(self, *args, dtype=None, device=None):
        """`model.to("cpu")` returns the model (the CPU is the one device); `model.to(dtype)`
        casts every floating-point parameter (and gradient) and buffer, as PyTorch. Cast
        before building the optimizer, which binds the parameters to flat buffers of
        their dtype (a cast after it is refused)."""
        dtype = to_arguments(args, dtype, device)
        if dtype is not None and np.dtype(dtype).kind != "f":
            raise TypeError(f"Module.to only casts to floating-point dtypes, got {dtype}")
        if dtype is not None and any(p.grad_slot is not None for p in self.parameters()):
            raise RuntimeError("Module.to(dtype) after an optimizer took the parameters into "
                               "its flat buffers (of their old dtype); cast the model first, "
                               "then build the optimizer")
        if dtype is not None:
            for param in self.parameters():
                param.data = param.data.astype(dtype)
                param.grad = None if param.grad is None else param.grad.astype(dtype)
            for module in self.modules():
                for name in module._buffers:
                    buffer = getattr(module, name)
                    if buffer.dtype.kind == "f":
                        object.__setattr__(module, name, buffer.astype(dtype))
        return self

    # ------------------------------------------------------------------ state
    def _named_state(self, prefix=""):
        """(name, array) of every parameter's data and every buffer in PyTorch's state_dict
        order: each module's parameters, then its buffers, then its children's. As in
        PyTorch, a shared module or parameter appears under each of its names, so a
        state_dict of tied weights loads into a PyTorch model and back."""
        for name, param in self._parameters.items():
            yield prefix + name, param.data
        for name in self._buffers:
            yield prefix + name, getattr(self, name)
        for name, child in self._modules.items():
            yield from child._named_state(f"{prefix}{name}.")

    def state_dict(self):
        """Copies of every parameter and buffer, keyed by dotted name."""
        return OrderedDict((name, np.array(value, copy=True)) for name, value in self._named_state())

    def load_state_dict(self, state_dict, strict=True):
        """Copy values in place (parameters keep their memory, and any flat buffer they
        are bound to). Missing, unexpected or misshapen entries are named in one error."""
        targets = OrderedDict(self._named_state())
        missing = [name for name in targets if name not in state_dict]
        unexpected = [name for name in state_dict if name not in targets]
        mismatched = [f"{name}: checkpoint {np.shape(state_dict[name])}, model "
                      f"{targets[name].shape}" for name in targets
                      if name in state_dict and np.shape(state_dict[name]) != targets[name].shape]
        problems = []
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        if problems:
            raise RuntimeError(f"{type(self).__name__}.load_state_dict: " + ", ".join(problems))
        for name, target in targets.items():
            if name in state_dict:
                np.copyto(target, np.asarray(state_dict[name]), casting="same_kind")
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self):
        """The settings a layer shows inside its repr (`in_features=64, ...`); a subclass
        with settings overrides it."""
        return ""

    def __repr__(self):
        lines = [self.extra_repr()] if self.extra_repr() else []
        for name, module in self._modules.items():
            lines.append(f"({name}): " + repr(module).replace("\n", "\n  "))
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"
