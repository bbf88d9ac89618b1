"""Sequential and ModuleList, indexed by position as in PyTorch (names '0', '1', ...)."""
from ..autograd import ops
from .layers import Conv2d, ConvTranspose2d, Linear, ReLU
from .module import Module


class _Numbered(Module):
    """Child modules named by their position: length, iteration and append."""

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        setattr(self, str(len(self)), module)
        return self


class Sequential(_Numbered):
    """Modules applied in order; `model.encoder.0.weight` names come from here.

    A ReLU right after a Linear, Conv2d or ConvTranspose2d overwrites that layer's output
    (PyTorch's `ReLU(inplace=True)`): nothing outside the Sequential sees the output, and
    those layers' backward never reads it, so the graph keeps one array there instead of
    two (0.08 MiB a sample of a ConvVAE's training memory)."""

    def __init__(self, *modules):
        super().__init__()
        for module in modules:
            self.append(module)

    def forward(self, x):
        previous = None
        for module in self._modules.values():
            if type(module) is ReLU and type(previous) in (Linear, Conv2d, ConvTranspose2d):
                x = ops.relu(x, inplace=True)
            else:
                x = module(x)
            previous = module
        return x

    def __getitem__(self, index):
        if isinstance(index, slice):
            # A slice keeps its modules' names, as PyTorch's ('2.weight' stays '2.weight').
            part = Sequential()
            for name, module in list(self._modules.items())[index]:
                setattr(part, name, module)
            return part
        return list(self._modules.values())[index]


class ModuleList(_Numbered):
    """A list of modules whose parameters are registered (no forward of its own)."""

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def extend(self, modules):
        """Append each of `modules`; returns the list."""
        for module in modules:
            self.append(module)
        return self

    def __getitem__(self, index):
        modules = list(self._modules.values())
        return ModuleList(modules[index]) if isinstance(index, slice) else modules[index]
