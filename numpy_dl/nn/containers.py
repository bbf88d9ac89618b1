"""Sequential and ModuleList, indexed by position as in PyTorch (names '0', '1', ...)."""
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
    """Modules applied in order; `model.encoder.0.weight` names come from here."""

    def __init__(self, *modules):
        super().__init__()
        for module in modules:
            self.append(module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
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
