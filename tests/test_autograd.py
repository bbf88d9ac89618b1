"""The Tensor and its graph: dtypes, broadcasting, accumulation, no_grad, deep graphs,
freed graphs and clear errors."""
import weakref

import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl import nn
from numpy_dl.autograd import Tensor


# ---------------------------------------------------------------------- construction
def test_float_data_becomes_float32_unless_dtype_given():
    assert ndl.tensor([1.0, 2.0]).dtype == np.float32
    assert ndl.tensor(np.zeros(3)).dtype == np.float32
    assert ndl.tensor(np.zeros(3), dtype=np.float64).dtype == np.float64
    assert ndl.tensor([1, 2]).dtype.kind == "i"


def test_tensor_copies_its_data():
    data = np.ones(3, dtype=np.float32)
    t = ndl.tensor(data)
    data[0] = 5
    assert t.data[0] == 1


def test_requires_grad_needs_float_data():
    with pytest.raises(TypeError, match="floating"):
        ndl.tensor([1, 2], requires_grad=True)


def test_properties():
    t = ndl.tensor(np.zeros((2, 3)), requires_grad=True)
    assert t.shape == (2, 3) and t.ndim == 2 and t.dtype == np.float32 and len(t) == 2
    assert t.requires_grad and t.is_leaf and t.grad is None
    assert isinstance(t.numpy(), np.ndarray)
    assert "requires_grad=True" in repr(t) and "float32" in repr(t)


def test_item_returns_python_float():
    t = ndl.tensor([[2.5]])
    value = t.item()
    assert type(value) is float and value == 2.5
    assert type(ndl.tensor(3.0, dtype=np.float64).sum().item()) is float
    with pytest.raises(ValueError, match=r"\(2,\)"):
        ndl.tensor([1.0, 2.0]).item()


# ---------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("scalar", [np.float64(0.3), 0.3, np.float32(0.3), np.array(0.3)])
def test_numpy_and_python_scalars_never_upcast(scalar):
    t = ndl.tensor([1.0, 2.0], requires_grad=True)
    for out in (scalar * t, t * scalar, scalar + t, t - scalar, scalar - t, scalar / t,
                t / scalar, t ** scalar, scalar ** t):
        assert isinstance(out, Tensor), type(out)
        assert out.dtype == np.float32
    (np.float64(0.3) * t).sum().backward()
    assert t.grad.dtype == np.float32
    np.testing.assert_allclose(t.grad, [0.3, 0.3], rtol=1e-6)


def test_float64_array_on_the_left_defers_to_tensor():
    t = ndl.tensor([1.0, 2.0], requires_grad=True)
    out = np.array([0.5, 2.0]) * t
    assert isinstance(out, Tensor) and out.dtype == np.float32
    out = np.eye(2) @ t
    assert isinstance(out, Tensor) and out.dtype == np.float32
    np.testing.assert_allclose(out.data, [1.0, 2.0])


def test_interpolation_stays_float32():
    """The guide's latent interpolation: (1 - alpha) * z1 + alpha * z2 with NumPy alphas."""
    z1, z2 = ndl.tensor(np.zeros(4)), ndl.tensor(np.ones(4))
    for alpha in np.linspace(0, 1, 5):
        for z in ((1 - alpha) * z1 + alpha * z2, z1 * (1 - alpha) + z2 * alpha):
            assert z.dtype == np.float32
            np.testing.assert_allclose(z.data, alpha, rtol=1e-6)


def test_integer_tensor_times_float_scalar_is_not_truncated():
    """A float constant must not be cast to an integer tensor's dtype (0.5 -> 0)."""
    t = ndl.tensor([1, 2, 3])
    np.testing.assert_allclose((t * 0.5).data, [0.5, 1.0, 1.5])
    np.testing.assert_allclose((t + 0.25).data, [1.25, 2.25, 3.25])
    assert (t * 2).dtype.kind == "i"


def test_dtype_guard_catches_an_upcasting_op(dtype_guard):
    """The float32 guard used by test_gradcheck can fail."""
    a = ndl.tensor([1.0, 2.0], requires_grad=True)
    Tensor._make(a.data * 2, (a,), lambda g: (g.astype(np.float64) * 2,), "double").sum().backward()
    assert dtype_guard and "float64" in dtype_guard[0]


# ---------------------------------------------------------------------- gradients
def test_broadcasting_is_undone_in_backward():
    a = ndl.tensor(np.ones((3, 1)), requires_grad=True)
    b = ndl.tensor(np.ones((1, 4)) * 2, requires_grad=True)
    c = ndl.tensor(np.ones(4) * 3, requires_grad=True)
    s = ndl.tensor(5.0, requires_grad=True)
    (a * b + c * s).sum().backward()
    np.testing.assert_allclose(a.grad, np.full((3, 1), 8.0))
    np.testing.assert_allclose(b.grad, np.full((1, 4), 3.0))
    np.testing.assert_allclose(c.grad, np.full(4, 15.0))
    np.testing.assert_allclose(s.grad, 36.0)
    assert s.grad.shape == ()


def test_gradients_accumulate_until_zero_grad():
    x = ndl.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 7.0])
    x.zero_grad()
    assert x.grad is None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


def test_accumulation_does_not_alias_upstream_gradients():
    """A leaf's first gradient is its own memory: later accumulation must not write into
    an array another node (or the caller's grad=) still owns."""
    x = ndl.tensor([1.0, 2.0], requires_grad=True)
    upstream = np.ones(2, dtype=np.float32)
    x.backward(upstream)
    x.backward(upstream)
    np.testing.assert_array_equal(upstream, [1.0, 1.0])
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_diamond_graph_sums_both_paths():
    x = ndl.tensor(3.0, requires_grad=True)
    y = x * 2
    z = y * y + y  # dz/dx = (2y + 1) * 2 = 26
    z.backward()
    np.testing.assert_allclose(x.grad, 26.0)


def test_repeated_fancy_indices_accumulate():
    x = ndl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[[0, 0, 2, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 1.0])
    x.zero_grad()
    x[np.array([1, 1])].sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 2.0, 0.0])


def test_max_ties_share_the_gradient_evenly():
    """As PyTorch's amax (and max() with no dim): tied maxima split the gradient."""
    x = ndl.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]], requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [1, 0, 0]])
    x.zero_grad()
    x.max().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [0, 0, 0]])


def test_kinks_follow_pytorch():
    """Gradients at the kinks: relu'(0) = 0, |x|'(0) = 0, clamp passes at its ends."""
    x = ndl.tensor([0.0, 1.0, -1.0], requires_grad=True)
    x.relu().sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 1, 0])
    x.zero_grad()
    ndl.abs(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 1, -1])
    y = ndl.tensor([0.0, 1.0, 2.0, -0.5], requires_grad=True)
    y.clip(0, 1).sum().backward()
    np.testing.assert_array_equal(y.grad, [1, 1, 0, 0])
    np.testing.assert_array_equal(y.clip(0, 1).data, [0, 1, 1, 0])


def test_sigmoid_is_stable_for_large_inputs():
    x = ndl.tensor([-1000.0, 0.0, 1000.0], requires_grad=True)
    with np.errstate(all="raise"):
        y = ndl.sigmoid(x)
        y.sum().backward()
    np.testing.assert_allclose(y.data, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(x.grad, [0.0, 0.25, 0.0])


def test_values_match_numpy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    t = ndl.tensor(a)
    np.testing.assert_array_equal(t.transpose(0, 2).data, a.swapaxes(0, 2))
    np.testing.assert_array_equal(t.permute(2, 0, 1).data, a.transpose(2, 0, 1))
    np.testing.assert_array_equal(t.T.data, a.T)
    np.testing.assert_array_equal(t.reshape(6, 4).data, a.reshape(6, 4))
    np.testing.assert_array_equal(t.reshape((4, -1)).data, a.reshape(4, -1))
    np.testing.assert_array_equal(t.sum(axis=(0, 2)).data, a.sum(axis=(0, 2)))
    np.testing.assert_allclose(t.mean(axis=1, keepdims=True).data, a.mean(axis=1, keepdims=True))
    np.testing.assert_array_equal(t.max(axis=-1).data, a.max(axis=-1))
    np.testing.assert_array_equal(t[1, :, ::2].data, a[1, :, ::2])
    np.testing.assert_array_equal(ndl.cat([t, t], 1).data, np.concatenate([a, a], 1))
    np.testing.assert_array_equal(ndl.stack([t, t], -1).data, np.stack([a, a], -1))
    np.testing.assert_allclose((t @ t.transpose(1, 2)).data, a @ a.swapaxes(1, 2), rtol=1e-6)


def test_one_hot():
    out = ndl.one_hot(np.array([2, 0]), 3)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.data, [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="3"):
        ndl.one_hot(np.array([3]), 3)
    with pytest.raises(TypeError):
        ndl.one_hot(np.array([0.5]), 3)


# ---------------------------------------------------------------------- the graph
def test_no_grad_builds_no_graph():
    x = ndl.tensor([1.0, 2.0], requires_grad=True)
    with ndl.no_grad():
        assert not ndl.is_grad_enabled()
        y = (x * 2).exp().sum()
    assert ndl.is_grad_enabled()
    assert not y.requires_grad and y._parents == () and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_as_decorator_and_nested():
    x = ndl.tensor([1.0], requires_grad=True)

    @ndl.no_grad()
    def infer(t):
        return t * 2

    assert not infer(x).requires_grad
    with ndl.no_grad():
        with ndl.no_grad():
            pass
        assert not ndl.is_grad_enabled()
    assert ndl.is_grad_enabled()
    with pytest.raises(KeyError):
        with ndl.no_grad():
            raise KeyError("boom")
    assert ndl.is_grad_enabled()


def test_ops_on_constants_do_not_require_grad():
    a, b = ndl.tensor([1.0]), ndl.tensor([2.0])
    assert not (a * b).requires_grad
    x = ndl.tensor([1.0], requires_grad=True)
    assert (a * x).requires_grad
    (a * x).sum().backward()
    assert a.grad is None


def test_detach_stops_the_gradient():
    x = ndl.tensor([2.0], requires_grad=True)
    y = x * x.detach()
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [2.0])
    assert not x.detach().requires_grad


def test_deep_chain_backpropagates_without_recursion_error():
    x = ndl.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001 + 0.0
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0001 ** 5000, rtol=1e-3)


def test_deep_chain_of_shape_ops():
    x = ndl.tensor(np.ones((2, 3)), requires_grad=True)
    y = x
    for _ in range(3000):
        y = y.transpose(0, 1)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((2, 3)))


def test_second_backward_through_freed_graph_raises():
    x = ndl.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    # a new forward pass works again
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [4.0, 8.0])


def test_backward_frees_each_intermediate_output_once_its_gradient_has_passed():
    """As PyTorch: memory a step's forward made is given back during backward, not after
    it. The weight's hook runs when the product with it has passed back; by then the
    nodes downstream of that product (its scaled copy) hold no memory."""
    x = ndl.tensor(np.ones(4), requires_grad=True)
    weight = ndl.tensor(np.ones(4), requires_grad=True)
    scaled = x.exp() * weight * 3
    scaled_data = weakref.ref(scaled.data)
    loss = scaled.sum()
    del scaled
    alive_at_hook = []
    weight.register_post_accumulate_grad_hook(lambda t: alive_at_hook.append(scaled_data()))
    loss.backward()
    assert alive_at_hook == [None]
    np.testing.assert_allclose(x.grad, 3 * np.e * np.ones(4))


def test_backward_through_a_shared_freed_subgraph_raises():
    x = ndl.tensor([1.0], requires_grad=True)
    h = x.exp()
    (h * 2).sum().backward()
    with pytest.raises(RuntimeError, match="second time"):
        (h * 3).sum().backward()


def test_backward_needs_scalar_or_matching_grad():
    x = ndl.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    with pytest.raises(RuntimeError, match="scalar"):
        y.backward()
    with pytest.raises(ValueError, match=r"\(2,\)"):
        (x * 3).backward(np.ones(3))
    (x * 3).backward(np.array([1.0, 0.5]))
    np.testing.assert_allclose(x.grad, [3.0, 1.5])
    assert x.grad.dtype == np.float32


def test_unused_branches_get_no_gradient():
    x = ndl.tensor([1.0], requires_grad=True)
    z = ndl.tensor([1.0], requires_grad=True)
    _ = z * 2  # built but never part of the loss
    (x * 2).sum().backward()
    assert z.grad is None
    np.testing.assert_allclose(x.grad, [2.0])


# ---------------------------------------------------------------------- errors
def test_shape_errors_are_clear():
    a, b = ndl.tensor(np.ones((2, 3))), ndl.tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\)"):
        a.reshape(4, 2)
    with pytest.raises(ValueError, match=r"cat.*\(2, 3\).*\(4, 5\)"):
        ndl.cat([a, b], 0)
    with pytest.raises(ValueError, match="stack"):
        ndl.stack([a, b])
    with pytest.raises(ValueError, match="permut"):
        a.permute(0, 0)


def test_power_zero_has_zero_gradient_at_zero():
    x = ndl.tensor([0.0, 2.0], requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])


def test_augmented_assignment_rebinds_and_never_changes_what_a_graph_saved():
    x = ndl.tensor([1.0, 2.0], requires_grad=True)
    loss = 0
    for power in (1, 2):
        loss += (x ** power).sum()   # accumulating a loss, as in PyTorch
    loss.backward()
    assert np.allclose(x.grad, [3.0, 5.0])
    w = ndl.tensor([1.0, 1.0], requires_grad=True)
    data = ndl.tensor([1.0, 2.0])
    y = (data * w).sum()
    data += 10
    out = w * w
    square = (out * out).sum()
    with ndl.no_grad():
        out *= 100
    y.backward()
    square.backward()
    assert np.allclose(w.grad, [1.0 + 4.0, 2.0 + 4.0]) and np.allclose(data.data, [11, 12])


def test_graph_nodes_carry_their_op_name():
    x = ndl.tensor([[1.0, -2.0]], requires_grad=True)
    y = (x * 3).relu().sum()
    assert (x.op, y.op) == (None, "sum")
    assert "grad_fn=<sum>" in repr(y) and "requires_grad=True" in repr(x)
    hidden = (x * 3).relu()
    hidden.sum().backward()
    with pytest.raises(RuntimeError, match="second time \\(at relu\\)"):
        hidden.sum().backward()  # reaches the relu node that the first pass freed


def test_tensor_module_is_not_hidden_by_the_factory():
    import numpy_dl.autograd.tensor as module
    assert module.Tensor is ndl.Tensor and ndl.autograd.tensor is module
    assert callable(ndl.tensor) and "__add__" in vars(ndl.Tensor) and "relu" in vars(ndl.Tensor)


# ---------------------------------------------------------------------- post-accumulate hooks
def test_post_accumulate_hook_runs_once_after_the_last_use_of_a_leaf():
    shared = ndl.tensor([1.0, 2.0], requires_grad=True)
    first = ndl.tensor([3.0, 4.0], requires_grad=True)
    seen = []
    for name, leaf in (("shared", shared), ("first", first)):
        leaf.register_post_accumulate_grad_hook(
            lambda t, name=name: seen.append((name, t.grad.copy())))
    ((shared * first).tanh() * shared).sum().backward()  # `shared` takes two gradients
    assert sorted(name for name, _ in seen) == ["first", "shared"]
    np.testing.assert_array_equal(dict(seen)["shared"], shared.grad)  # both, summed


def test_post_accumulate_hook_skips_a_pass_without_a_gradient_and_can_be_removed():
    leaf = ndl.tensor([1.0], requires_grad=True)
    other = ndl.tensor([2.0], requires_grad=True)
    calls = []
    handle = leaf.register_post_accumulate_grad_hook(lambda t: calls.append(t))
    (other * 2.0).sum().backward()
    assert calls == []
    (leaf * 2.0).sum().backward()
    leaf.sum().backward()  # backward() on the leaf's own sum, and on a leaf as the root:
    leaf.backward(np.ones(1, dtype=np.float32))
    assert calls == [leaf] * 3
    handle.remove()
    (leaf * 2.0).sum().backward()
    assert len(calls) == 3
    with pytest.raises(RuntimeError, match="only be registered on leaf"):
        (leaf * 2.0).register_post_accumulate_grad_hook(print)


def test_post_accumulate_hooks_run_layer_by_layer_from_the_output():
    ndl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(),
                          nn.Linear(4, 2))
    order = []
    for name, param in model.named_parameters():
        param.register_post_accumulate_grad_hook(lambda t, name=name: order.append(name))
    model(ndl.tensor(np.ones((5, 3)))).sum().backward()
    assert order == ["4.weight", "4.bias", "2.weight", "2.bias", "0.weight", "0.bias"]
