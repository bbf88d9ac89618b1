"""The Tensor: an ndarray that remembers which op made it, so gradients can flow back.

Every op builds its output with `Tensor._make(data, parents, backward, op)`, where
`backward` maps the output's gradient to one gradient per parent (None where a parent
needs none) and `op` names the op, for `repr` (`grad_fn=<conv2d>`) and error messages.
`Tensor.backward` walks that graph once, in a deterministic reverse topological order,
and frees it as it goes, like PyTorch without `retain_graph`.
"""
import numpy as np

from .grad_mode import is_grad_enabled


def _graph_freed(op):
    def backward(grad):
        raise RuntimeError(
            f"Trying to backward through the graph a second time (at {op}): its intermediate "
            f"values were freed by the first backward(). Recompute the forward pass first.")
    return backward


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def as_array(value, dtype=None):
    """Array for `value`; Python and NumPy floats take `dtype` so they never upcast a tensor.

    Only a cast within the same kind: a float constant must not be truncated to an
    integer tensor's dtype (int_tensor * 0.5 would become zeros)."""
    if isinstance(value, Tensor):
        return value.data
    array = np.asarray(value)
    if dtype is not None and array.dtype != dtype and np.can_cast(array.dtype, dtype, "same_kind"):
        array = array.astype(dtype)
    return array


def _op_method(name, reflected=False):
    """A Tensor method that calls op `name` of ops.py with the tensor first (or second,
    for the reflected operators: `2 - t` is sub(2, t)). The op is looked up when called,
    since ops.py builds on Tensor and is imported after it."""
    if reflected:
        def method(self, other):
            return getattr(ops, name)(other, self)
    else:
        def method(self, *args, **kwargs):
            return getattr(ops, name)(self, *args, **kwargs)
    swapped = " with the operands swapped" if reflected else ""
    method.__doc__ = f"numpy_dl.autograd.ops.{name}{swapped}"
    method.op_name = None if reflected else name  # ops.py gives it the op's docstring
    return method


class Conversions:
    """PyTorch's shorthands for `.to(...)`, shared by Tensor and Module."""

    def cpu(self):
        return self

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def long(self):
        return self.to(np.int64)


class Tensor(Conversions):
    """An n-dimensional float array with an optional gradient, as in PyTorch: `data` is
    the ndarray of values, `grad` the gradient that `backward()` accumulates (an ndarray,
    or None), and `requires_grad` says whether operations on it are recorded."""

    # NumPy scalars and arrays on the left of an operator defer to Tensor's reflected ops.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False):
        self.data = data if isinstance(data, np.ndarray) else np.asarray(data)
        if requires_grad:
            check_differentiable(self.data.dtype, "Tensor")
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._backward = None
        self.op = None  # the name of the op that made it, while it is in a graph

    _post_accumulate_hooks = {}  # id -> hook; a leaf gets its own dict on registering one

    def __getstate__(self):
        """What copy, deepcopy and pickle take: everything but the post-accumulate hooks,
        which belong to whoever registered them (an optimizer of this tensor, not of a
        copy of it)."""
        state = dict(self.__dict__)
        state.pop("_post_accumulate_hooks", None)
        return state

    @classmethod
    def _make(cls, data, parents, backward, op):
        """The output of op `op`; it joins the graph only when a parent needs a gradient."""
        out = Tensor(data)
        if is_grad_enabled() and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = parents
            out._backward = backward
            out.op = op
        return out

    # ------------------------------------------------------------------ properties
    @property
    def shape(self):
        """The shape, a tuple of ints."""
        return self.data.shape

    @property
    def dtype(self):
        """The NumPy dtype of `data` (float32 unless asked otherwise)."""
        return self.data.dtype

    @property
    def ndim(self):
        """The number of dimensions."""
        return self.data.ndim

    @property
    def is_leaf(self):
        """True unless an operation that records gradients made it: leaves (parameters,
        inputs) are where `backward()` stores `.grad`."""
        return self._backward is None

    @property
    def device(self):
        """Always "cpu": NumPy arrays live in host memory."""
        return "cpu"

    def __len__(self):
        return len(self.data)

    def size(self, dim=None):
        """The shape, or the length of dimension `dim`, as `torch.Tensor.size`."""
        return self.shape if dim is None else self.shape[dim]

    def dim(self):
        """The number of dimensions, as `torch.Tensor.dim`."""
        return self.ndim

    def numel(self):
        """The number of elements."""
        return self.data.size

    def item(self):
        """The value of a one-element tensor as a Python float (a loss, for logging)."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return float(self.data.reshape(()))

    def numpy(self):
        """The ndarray itself, not a copy, as `torch.Tensor.numpy`."""
        return self.data

    def __array__(self, dtype=None, copy=None):
        """`np.asarray(t)` is the tensor's data (gradients do not flow through NumPy)."""
        return self.data if dtype is None else self.data.astype(dtype, copy=bool(copy))

    def detach(self):
        """A tensor on the same data outside the graph: nothing flows back through it."""
        return Tensor(self.data)

    def to(self, *args, dtype=None, device=None, non_blocking=False, copy=False):
        """`t.to("cpu")`, `t.to(np.float64)`, `t.to("cpu", np.float64)`, `t.to(other)` as
        in PyTorch: the same tensor when nothing changes (unless `copy`), else a cast,
        differentiable to a float dtype. `non_blocking` means nothing on the CPU."""
        dtype = to_arguments(args, dtype, device)
        if dtype is None or np.dtype(dtype) == self.dtype:
            return ops.clone(self) if copy else self
        return ops.cast(self, dtype)

    def __repr__(self):
        if self.op is not None:
            grad = f", grad_fn=<{self.op}>"
        else:
            grad = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{grad})"

    # ------------------------------------------------------------------ operators and methods
    # Each is the op of that name in ops.py, which computes its value and gradient. NumPy
    # arrays and Python numbers on either side become constants of the tensor's dtype.
    __add__, __radd__ = _op_method("add"), _op_method("add", reflected=True)
    __sub__, __rsub__ = _op_method("sub"), _op_method("sub", reflected=True)
    __mul__, __rmul__ = _op_method("mul"), _op_method("mul", reflected=True)
    __truediv__, __rtruediv__ = _op_method("div"), _op_method("div", reflected=True)
    __pow__, __rpow__ = _op_method("pow"), _op_method("pow", reflected=True)
    __matmul__, __rmatmul__ = _op_method("matmul"), _op_method("matmul", reflected=True)
    __neg__ = _op_method("neg")
    __getitem__ = _op_method("getitem")
    sum = _op_method("sum")              # (axis=None, keepdims=False) or (dim=, keepdim=)
    mean = _op_method("mean")            # (axis=None, keepdims=False) or (dim=, keepdim=)
    max = _op_method("max")              # (axis=None, keepdims=False) or (dim=, keepdim=)
    argmax = _op_method("argmax")        # (dim=None, keepdim=False)
    reshape = view = _op_method("reshape")  # (*shape) or (shape)
    flatten = _op_method("flatten")      # (start_dim=0, end_dim=-1)
    unsqueeze = _op_method("unsqueeze")  # (dim)
    squeeze = _op_method("squeeze")      # (dim=None)
    clone = _op_method("clone")
    permute = _op_method("permute")      # (*dims) or (dims)
    transpose = _op_method("transpose")  # (dim0, dim1)
    clip = clamp = _op_method("clip")    # (min=None, max=None)
    exp, log, sqrt = _op_method("exp"), _op_method("log"), _op_method("sqrt")
    abs, tanh = _op_method("abs"), _op_method("tanh")
    sigmoid, relu = _op_method("sigmoid"), _op_method("relu")
    maximum, minimum = _op_method("maximum"), _op_method("minimum")  # (other)

    def where(self, condition, other):
        """`self` where `condition` holds, else `other`, as `torch.Tensor.where`."""
        return ops.where(condition, self, other)

    def requires_grad_(self, requires_grad=True):
        """Start (or stop) recording operations on this leaf, as PyTorch; returns it."""
        if requires_grad:
            check_differentiable(self.dtype, "requires_grad_")
        self.requires_grad = bool(requires_grad)
        return self

    def contiguous(self):
        """The tensor itself: every op already returns what NumPy lays out."""
        return self

    @property
    def T(self):
        """The dims reversed, as `x.T` in PyTorch and NumPy."""
        return ops.permute(self, tuple(reversed(range(self.ndim))))

    # ------------------------------------------------------------------ backward
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into the `.grad` of every leaf that requires it."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: no input "
                               "of the computation had requires_grad=True")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar output; "
                                   f"pass grad= of shape {self.shape}")
            grad = np.ones_like(self.data)
        else:
            grad = as_array(grad, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(grad): expected shape {self.shape}, got {grad.shape}")
        pending = {self: grad}
        order = self._topological_order()
        finished_by = _hooked_leaves_finished_by(order)
        received = set()  # leaves with hooks that took a gradient in this pass
        while order:
            # Popped, not iterated: once a node has passed its gradient back, this pass
            # drops it (at the next node), so its output is freed unless the caller
            # keeps it.
            node = order.pop()
            grad = pending.pop(node, None)
            if grad is not None and node._backward is None:
                node._accumulate(grad)
                received.add(node)
            elif grad is not None:
                received.update(node._pass_back(grad, pending))
            for leaf in finished_by.pop(node, ()):
                if leaf in received:
                    for hook in leaf._post_accumulate_hooks.values():
                        hook(leaf)

    def _pass_back(self, grad, pending):
        """Run this node's backward: leaves take their gradients at once, other parents
        collect theirs in `pending`; then free the node. Returns the leaves it fed."""
        fed = []
        parent_grads = self._backward(grad)
        for parent, parent_grad in zip(self._parents, parent_grads):
            if parent_grad is None or not parent.requires_grad:
                continue
            if parent._backward is None:
                # A leaf takes its gradient at once: an op may have written it straight
                # into the leaf's gradient memory (see `Tensor.grad_destination`).
                parent._accumulate(parent_grad)
                fed.append(parent)
            elif parent in pending:
                pending[parent] = pending[parent] + parent_grad
            else:
                pending[parent] = parent_grad
        self._parents = ()
        self._backward = _graph_freed(self.op)
        return fed

    def register_post_accumulate_grad_hook(self, hook):
        """Call `hook(tensor)` in every backward() once this leaf's gradient of that pass
        is all in `.grad` (after its last use in the graph), as PyTorch's method of the
        same name; not at all in a pass that gives it no gradient (nor while it does not
        require grad). DistributedOptimizer starts all-reducing a bucket of gradients from
        it while backward goes on. Returns a handle whose `remove()` unregisters the hook."""
        if not self.is_leaf:
            raise RuntimeError("post-accumulate-grad hooks can only be registered on leaf "
                               "tensors (parameters, inputs), where backward() stores .grad")
        if "_post_accumulate_hooks" not in self.__dict__:
            self._post_accumulate_hooks = {}
        return HookHandle(self._post_accumulate_hooks, hook)

    def _topological_order(self):
        """Nodes that need a gradient, each after all of its parents (iterative DFS)."""
        order, seen = [], set()
        stack = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if node in seen:
                continue
            seen.add(node)
            stack.append((node, True))
            for parent in reversed(node._parents):
                if parent.requires_grad and parent not in seen:
                    stack.append((parent, False))
        return order

    def _accumulate(self, grad):
        if grad.dtype != self.dtype:
            grad = grad.astype(self.dtype)
        if self.grad is None:
            self.grad = self._fresh_grad(grad)
        else:
            self.grad += grad

    def _fresh_grad(self, grad):
        """Memory for a first gradient; Parameters override this to use a flat buffer."""
        return np.array(grad, dtype=self.dtype, copy=True)

    def grad_destination(self):
        """Memory an op may compute this leaf's first gradient into (`out=`), saving a
        copy; None when there is none. Parameters offer their flat-buffer slot."""
        return None

    def zero_grad(self, set_to_none=True):
        """Drop the gradient, or with set_to_none=False zero it where it lives."""
        if set_to_none or self.grad is None:
            self.grad = None
        else:
            self.grad[...] = 0


def _hooked_leaves_finished_by(order):
    """{node: leaves with post-accumulate hooks whose last gradient of this pass that node
    gives}. The nodes run in reverse `order`, so a leaf's last gradient comes from its
    consumer that stands first in `order`."""
    finished_by, seen = {}, set()
    root = order[-1]
    if root._backward is None and root._post_accumulate_hooks:  # backward() on a leaf
        finished_by[root] = [root]
    for node in order:
        for parent in node._parents:
            if parent._post_accumulate_hooks and parent._backward is None and parent not in seen:
                seen.add(parent)
                finished_by.setdefault(node, []).append(parent)
    return finished_by


class HookHandle:
    """What registering a hook returns: `remove()` takes the hook out again (PyTorch's
    RemovableHandle)."""
    _next_id = 0

    def __init__(self, hooks, hook):
        HookHandle._next_id += 1
        self.id, self._hooks = HookHandle._next_id, hooks
        hooks[self.id] = hook

    def remove(self):
        self._hooks.pop(self.id, None)


def to_arguments(args, dtype=None, device=None):
    """The dtype that `.to(*args, dtype=, device=)` asks for (None: keep it), after checking
    the device; an argument that is a Tensor stands for its dtype."""
    for arg in args:
        if isinstance(arg, Tensor):
            dtype = arg.dtype
        elif _is_dtype(arg):
            dtype = arg
        else:
            device = arg
    check_device(device)
    return dtype


def _is_dtype(value):
    try:
        np.dtype(value)
        return value is not None
    except TypeError:
        return False


def check_differentiable(dtype, call):
    """Only floating-point tensors can require gradients (as in PyTorch): an integer
    tensor's gradient would be rounded to integers, zeros for a mean."""
    if np.dtype(dtype).kind != "f":
        raise TypeError(f"{call}(requires_grad=True) needs a floating-point dtype, got {dtype}; "
                        f"pass float data or dtype=np.float32")


def check_device(device):
    """None or "cpu" (a string or a torch-style device object), the one device there is."""
    if device is not None and str(device) not in ("cpu", "cpu:0"):
        raise ValueError(f"numpy_dl computes with NumPy on the CPU only: device must be 'cpu' "
                         f"or None, got {device!r}")


def tensor(data, *, dtype=None, device=None, requires_grad=False):
    """A new leaf Tensor holding a copy of `data`, as `torch.tensor`, except that float
    data always becomes float32 unless `dtype` says otherwise (torch.tensor keeps a
    float64 array float64); integers stay int64 (NumPy's default int)."""
    check_device(device)
    if isinstance(data, Tensor):
        data = data.data
    array = np.array(data, dtype=dtype)
    if dtype is None and array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    if requires_grad:
        check_differentiable(array.dtype, "tensor")
    return Tensor(array, requires_grad=requires_grad)


def from_numpy(array):
    """A leaf Tensor over `array`'s own memory (no copy, its dtype kept), as
    `torch.from_numpy`."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a NumPy array, got {type(array).__name__}")
    return Tensor(array)


def input_tensor(value):
    """`value` as the input of a layer, model or loss: a Tensor as it is, anything else
    (an array, a list, a number) as a float32 constant."""
    return value if isinstance(value, Tensor) else Tensor(np.asarray(value, dtype=np.float32))

# ops.py builds on Tensor, so it comes after it; the methods above look it up when called.
from . import ops  # noqa: E402
