"""Make every rank start from rank 0's state: parameters, buffers, optimizer state.

Each rank builds its model with its own random initialisation; broadcasting the root's
values in place is what makes them replicas. Parameters that are views into an
optimizer's flat buffer are sent as that whole buffer, one Bcast for the model.
"""
from collections import namedtuple

import numpy as np

from .communicator import portable, raise_together, resolve

# Stands for an array in the structure sent as an object by `broadcast_tree`.
_ArraySpec = namedtuple("_ArraySpec", ["index", "shape", "dtype"])


def broadcast_parameters(model, comm=None, root=0):
    """Copy the root's parameters and buffers (e.g. BatchNorm running statistics) into
    every rank's model, in place. Collective. Raises on every rank, naming the first
    difference, when the ranks' models do not have the same parameters."""
    comm = resolve(comm)
    params = [(name, param.data) for name, param in model.named_parameters()]
    buffers = list(model.named_buffers())
    messages = _whole_buffers([array for _, array in params]) + [array for _, array in buffers]
    layout = ([(name, array.shape, array.dtype.str) for name, array in params + buffers],
              [array.size for array in messages])
    expected = comm.bcast_object(layout if comm.rank == root else None, root=root)
    raise_together(comm, None if layout == expected else ValueError(
        f"broadcast_parameters: rank {comm.rank}'s model differs from rank {root}'s: "
        f"{_first_difference(layout, expected)}"))
    for array in messages:
        comm.broadcast_(array, root=root)


def broadcast_optimizer_state(optimizer, comm=None, root=0):
    """Load the root's optimizer state (per-parameter arrays and step counts, and every
    param group's hyper-parameters such as lr and betas) on every rank. Collective."""
    comm = resolve(comm)
    state = broadcast_tree(optimizer.state_dict() if comm.rank == root else None, comm, root)
    error = None
    if comm.rank != root:
        try:
            optimizer.load_state_dict(state)
        except Exception as exc:  # raised again below, on every rank
            error = exc
    raise_together(comm, error)


def broadcast_tree(tree, comm=None, root=0):
    """The root's nested dicts/lists/tuples with NumPy-array leaves, on every rank.

    The structure goes as one pickled object with each array replaced by its shape and
    dtype; the arrays follow as buffer Bcasts, never pickled. Other ranks pass None.
    """
    comm = resolve(comm)
    arrays = []
    skeleton = comm.bcast_object(_strip(tree, arrays) if comm.rank == root else None, root=root)
    if comm.rank != root:
        arrays = [np.empty(spec.shape, dtype=spec.dtype) for spec in _specs(skeleton)]
    for array in arrays:
        comm.broadcast_(array, root=root)
    return _fill(skeleton, arrays)


def on_root(work, comm=None, root=0):
    """Collective: run work() on the root alone; every rank returns its result (arrays in
    it travel as buffers, see broadcast_tree) or raises the exception it raised."""
    comm = resolve(comm)
    outcome = failure = None
    if comm.rank == root:
        try:
            outcome = {"value": work(), "error": None}
        except Exception as exc:  # raised again below, on every rank
            failure = exc
            outcome = {"value": None, "error": portable(exc)}
    outcome = broadcast_tree(outcome, comm, root)
    if outcome["error"] is not None:
        raise failure if failure is not None else outcome["error"]
    return outcome["value"]


def _whole_buffers(arrays):
    """The arrays to send so that all of `arrays` arrive: a buffer that some of them tile
    exactly (an optimizer's flat buffer) goes whole, the others go one by one."""
    by_base = {}
    for array in arrays:
        by_base.setdefault(id(array.base), (array.base, []))[1].append(array)
    messages = []
    for base, members in by_base.values():
        messages.extend([base] if base is not None and _tiles(base, members) else members)
    return messages


def _tiles(base, members):
    """True when `members` are C-contiguous views that cover all of `base` without overlap."""
    if not (base.flags.c_contiguous and base.flags.writeable):
        return False
    if not all(m.flags.c_contiguous for m in members):
        return False
    extents = sorted((m.ctypes.data - base.ctypes.data, m.nbytes) for m in members)
    end = 0
    for start, nbytes in extents:
        if start != end:
            return False
        end += nbytes
    return end == base.nbytes


def _first_difference(layout, expected):
    (mine, my_messages), (theirs, their_messages) = layout, expected
    for index in range(max(len(mine), len(theirs))):
        a = mine[index] if index < len(mine) else None
        b = theirs[index] if index < len(theirs) else None
        if a != b:
            return f"entry {index} is {_entry(a)} here, {_entry(b)} there"
    return (f"the parameters are laid out in memory differently ({len(my_messages)} vs "
            f"{len(their_messages)} messages): create the optimizer on every rank before "
            f"broadcast_parameters, or on none")


def _entry(entry):
    return "missing" if entry is None else f"{entry[0]!r} {entry[1]} {entry[2]}"


def _strip(tree, arrays):
    if isinstance(tree, np.ndarray):
        arrays.append(np.asarray(tree, order="C"))
        return _ArraySpec(len(arrays) - 1, tree.shape, tree.dtype.str)
    if isinstance(tree, dict):
        return type(tree)((key, _strip(value, arrays)) for key, value in tree.items())
    if isinstance(tree, (list, tuple)):
        return type(tree)(_strip(value, arrays) for value in tree)
    return tree


def _specs(skeleton):
    if isinstance(skeleton, _ArraySpec):
        yield skeleton
    elif isinstance(skeleton, dict):
        for value in skeleton.values():
            yield from _specs(value)
    elif isinstance(skeleton, (list, tuple)):
        for value in skeleton:
            yield from _specs(value)


def _fill(skeleton, arrays):
    if isinstance(skeleton, _ArraySpec):
        return arrays[skeleton.index]
    if isinstance(skeleton, dict):
        return type(skeleton)((key, _fill(value, arrays)) for key, value in skeleton.items())
    if isinstance(skeleton, (list, tuple)):
        return type(skeleton)(_fill(value, arrays) for value in skeleton)
    return skeleton
