"""What code ported from PyTorch relies on beyond the ops' values (those are in
test_torch_parity.py and test_gradcheck.py): constructors, devices, creation functions,
the layers' parameters, reprs and errors, and the optimizer's state."""
import warnings

import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl import nn, optim
from numpy_dl.loss import NLLLoss
from numpy_dl import functional as F


# ---------------------------------------------------------------------- tensors
@pytest.mark.parametrize("make", [lambda: ndl.Tensor([[1, 2], [3, 4]], requires_grad=True),
                                  lambda: ndl.tensor([1, 2], requires_grad=True),
                                  lambda: ndl.zeros(2, dtype=np.int64, requires_grad=True),
                                  lambda: ndl.arange(3, requires_grad=True)])
def test_integer_tensors_cannot_require_grad(make):
    with pytest.raises(TypeError, match="floating-point dtype, got int64"):
        make()


def test_cpu_is_the_device():
    t = ndl.tensor([1.0, 2.0], device="cpu")
    assert t.device == "cpu" and t.cpu() is t and t.to("cpu") is t
    for make in (lambda: ndl.tensor([1.0], device="cuda"), lambda: ndl.zeros(2, device="cuda:0"),
                 lambda: t.to("mps")):
        with pytest.raises(ValueError, match="CPU only: device must be 'cpu' or None, got"):
            make()


def test_to_casts_and_stays_differentiable():
    t = ndl.tensor([1.5, -2.0], requires_grad=True)
    d = t.to("cpu", np.float64)
    assert d.dtype == np.float64 and t.double().dtype == np.float64
    assert d.float().dtype == np.float32 and t.to(ndl.tensor([1], dtype=np.int64)).dtype == np.int64
    (d * d).sum().backward()
    assert t.grad.dtype == np.float32
    np.testing.assert_array_equal(t.grad, [3.0, -4.0])


def test_size_dim_numel_as_pytorch():
    t = ndl.zeros(2, 3, 4)
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.dim() == 3 and t.numel() == 24 and t.contiguous() is t


def test_shape_methods_follow_pytorch():
    t = ndl.zeros(2, 1, 3, 1)
    assert t.squeeze().shape == (2, 3)
    assert t.squeeze(1).shape == (2, 3, 1) and t.squeeze(0).shape == (2, 1, 3, 1)
    assert t.squeeze((1, 3)).shape == (2, 3)
    assert t.unsqueeze(0).shape == (1, 2, 1, 3, 1) and t.unsqueeze(-1).shape == (2, 1, 3, 1, 1)
    assert t.flatten().shape == (6,) and t.flatten(1).shape == (2, 3)
    assert t.flatten(1, 2).shape == (2, 3, 1) and ndl.tensor(5.0).flatten().shape == (1,)
    assert t.view(-1, 3).shape == (2, 3)
    with pytest.raises(IndexError, match=r"unsqueeze: dim 5 is out of range for shape "
                       r"\(2, 1, 3, 1\) \(expected a dim in \[-5, 4\]\)"):
        t.unsqueeze(5)
    for call in (lambda: t.flatten(5), lambda: t.flatten(0, 7), lambda: t.squeeze(4)):
        with pytest.raises(IndexError, match="is out of range for shape"):
            call()
    with pytest.raises(ValueError, match="names a dim more than once"):
        t.squeeze((1, 1))
    assert ndl.zeros(0, 3, 4).flatten(1).shape == (0, 12)
    with pytest.raises(ValueError, match="start_dim 2 comes after end_dim 1"):
        t.flatten(2, 1)


def test_where_picks_and_indexes():
    a, b = ndl.tensor([1.0, 5.0, 3.0]), ndl.tensor([4.0, 2.0, 6.0])
    np.testing.assert_array_equal(ndl.where(a.data > b.data, a, b).data, [4, 5, 6])
    np.testing.assert_array_equal(a.where(a.data > 2, 0.0).data, [0, 5, 3])
    (index,) = ndl.where(np.array([False, True, True]))
    assert index.dtype == np.int64 and list(index.data) == [1, 2]
    with pytest.raises(TypeError, match="condition must be boolean"):
        ndl.where(np.array([1, 0, 1]), a, b)


# ---------------------------------------------------------------------- creation
def test_creation_shapes_and_values():
    assert ndl.zeros(2, 3).shape == ndl.zeros((2, 3)).shape == ndl.zeros([2, 3]).shape == (2, 3)
    np.testing.assert_array_equal(ndl.ones(2).data, [1, 1])
    np.testing.assert_array_equal(ndl.full((2, 2), 7.5).data, [[7.5, 7.5], [7.5, 7.5]])
    np.testing.assert_array_equal(ndl.arange(1, 7, 2).data, [1, 3, 5])
    np.testing.assert_allclose(ndl.linspace(-1, 1, 5).data, [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_array_equal(ndl.eye(2, 3).data, [[1, 0, 0], [0, 1, 0]])
    assert ndl.empty(3, 2).shape == (3, 2)
    like = ndl.ones(2, 3, dtype=np.float64)
    for made in (ndl.zeros_like(like), ndl.ones_like(like), ndl.empty_like(like),
                 ndl.rand_like(like), ndl.randn_like(like), ndl.full_like(like, 2)):
        assert made.shape == (2, 3) and made.dtype == np.float64
    assert ndl.zeros_like(like, dtype=np.float32).dtype == np.float32
    assert ndl.ones(2, dtype=ndl.float64, requires_grad=True).requires_grad


def test_random_creation_follows_manual_seed_and_generators():
    ndl.manual_seed(3)
    first = (ndl.rand(4).data, ndl.randn(2, 2).data, ndl.randint(5, 10, (6,)).data)
    ndl.manual_seed(3)
    again = (ndl.rand(4).data, ndl.randn(2, 2).data, ndl.randint(5, 10, size=(6,)).data)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    u = ndl.rand(10000).data
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    ints = ndl.randint(5, 10, (1000,)).data
    assert set(np.unique(ints)) == {5, 6, 7, 8, 9}
    np.testing.assert_array_equal(ndl.randn(3, generator=np.random.default_rng(1)).data,
                                  ndl.randn(3, generator=np.random.default_rng(1)).data)
    assert ndl.randn(2, dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize("call, message", [
    (lambda: ndl.zeros(2, -1), "the size must be non-negative integers"),
    (lambda: ndl.ones(2.5), "the size must be non-negative integers"),
    (lambda: ndl.arange(0, 3, 0), "step must be nonzero"),
    (lambda: ndl.randint(3), "expected randint"),
    (lambda: ndl.randint(4, 2, (3,)), "need low < high"),
    (lambda: ndl.rand(2, dtype=np.int64), "draw floating-point values"),
    (lambda: ndl.linspace(0, 1, -2), "steps must be a non-negative integer"),
])
def test_creation_errors_are_one_clear_line(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


# ---------------------------------------------------------------------- layers
def test_new_layers_repr_as_pytorch():
    assert repr(nn.MaxPool2d(2)) == \
        "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
    assert repr(nn.AvgPool2d(3, 1, 1)) == "AvgPool2d(kernel_size=3, stride=1, padding=1)"
    assert repr(nn.Upsample(scale_factor=2)) == "Upsample(scale_factor=2.0, mode='nearest')"
    assert repr(nn.Upsample(size=(4, 5))) == "Upsample(size=(4, 5), mode='nearest')"
    assert repr(nn.LayerNorm(8)) == "LayerNorm((8,), eps=1e-05, elementwise_affine=True)"
    assert repr(nn.Embedding(10, 3, padding_idx=0)) == "Embedding(10, 3, padding_idx=0)"
    assert repr(nn.Softmax(dim=1)) == "Softmax(dim=1)"
    assert repr(nn.LogSoftmax(dim=-1)) == "LogSoftmax(dim=-1)"


def test_layer_norm_parameters_and_names():
    layer = nn.LayerNorm((3, 4))
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    np.testing.assert_array_equal(layer.weight.data, np.ones((3, 4)))
    assert nn.LayerNorm(4, elementwise_affine=False).weight is None
    assert nn.LayerNorm(4, bias=False).bias is None
    out = layer(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    np.testing.assert_allclose(out.data.reshape(2, -1).mean(axis=1), 0, atol=1e-6)
    with pytest.raises(ValueError, match=r"expected input of shape \(\*, 3, 4\)"):
        layer(np.zeros((2, 4, 3), np.float32))


def test_embedding_init_padding_and_training_through_the_flat_buffer():
    ndl.manual_seed(0)
    table = nn.Embedding(50, 8, padding_idx=-1)
    assert table.padding_idx == 49
    np.testing.assert_array_equal(table.weight.data[49], 0)
    assert abs(table.weight.data[:49].std() - 1) < 0.15  # N(0, 1), as PyTorch's
    optimizer = optim.SGD(table.parameters(), lr=1.0)
    before = table.weight.data.copy()
    indices = np.array([[3, 3, 49], [7, 3, 0]])
    optimizer.zero_grad()
    table(indices).sum().backward()
    optimizer.step()
    expected = before.copy()
    expected[3] -= 3
    expected[[7, 0]] -= 1
    np.testing.assert_array_equal(table.weight.data, expected)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 50\)"):
        table(np.array([50]))
    with pytest.raises(TypeError, match="indices must be integers"):
        table(np.array([1.0]))


def test_softmax_without_dim_warns_and_picks_pytorchs_legacy_dim():
    x = ndl.randn(2, 3)
    with pytest.warns(UserWarning, match="Implicit dimension choice for Softmax"):
        out = nn.Softmax()(x)
    np.testing.assert_allclose(out.data.sum(axis=1), 1, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(nn.LogSoftmax(dim=0)(x).data, F.log_softmax(x, 0).data)


def test_pooling_and_upsampling_errors():
    x = ndl.zeros(1, 1, 4, 4)
    cases = [(lambda: nn.MaxPool2d(2, dilation=2)(x), "dilation and return_indices"),
             (lambda: nn.MaxPool2d(2, padding=2)(x), "must be at most half of kernel_size"),
             (lambda: nn.AvgPool2d(5)(x), "smaller than kernel_size"),
             (lambda: nn.AvgPool2d(2, divisor_override=0)(x), "divisor_override must be"),
             (lambda: nn.MaxPool2d(2)(ndl.zeros(4, 4)), r"expected input of shape \(N, C, H, W\)"),
             (lambda: nn.Upsample(scale_factor=2, mode="bilinear")(x), "mode 'bilinear' is not"),
             (lambda: nn.Upsample()(x), "exactly one of size and scale_factor"),
             (lambda: nn.Upsample(size=0)(x), "size must be a positive int")]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_pooling_keeps_float32_and_a_nan_wins_the_max():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 0] = np.nan
    out = nn.MaxPool2d(2)(x)
    assert out.dtype == np.float32 and np.isnan(out.data[0, 0, 0, 0])
    np.testing.assert_array_equal(out.data[0, 0, 1], [13, 15])
    assert nn.Upsample(scale_factor=2)(x).dtype == np.float32


# ---------------------------------------------------------------------- losses and optimizers
def test_nll_loss_class_and_errors():
    log_probs = F.log_softmax(ndl.randn(4, 3), dim=1)
    labels = np.array([0, 2, 1, 2])
    np.testing.assert_allclose(NLLLoss()(log_probs, labels).data,
                               -log_probs.data[np.arange(4), labels].mean(), rtol=1e-6)
    assert NLLLoss(reduction="none")(log_probs, labels).shape == (4,)
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 3\)"):
        NLLLoss()(log_probs, np.array([0, 3, 1, 1]))
    with pytest.raises(ValueError, match="one entry per class"):
        NLLLoss(weight=np.ones(2))(log_probs, labels)
    with pytest.raises(ValueError, match="reduction must be one of"):
        NLLLoss(reduction="avg")


def test_rmsprop_defaults_and_state_are_pytorchs():
    param = nn.Parameter(np.ones(3, np.float32))
    optimizer = optim.RMSprop([param])
    assert optimizer.defaults == dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                                      momentum=0.0, centered=False)
    param.grad = np.ones(3, np.float32)
    optimizer.step()
    assert sorted(optimizer.state_dict()["state"][0]) == ["square_avg", "step"]
    full = optim.RMSprop([nn.Parameter(np.ones(2, np.float32))], momentum=0.9, centered=True)
    full.param_groups[0]["params"][0].grad = np.ones(2, np.float32)
    full.step()
    assert sorted(full.state_dict()["state"][0]) == ["grad_avg", "momentum_buffer",
                                                     "square_avg", "step"]
    with pytest.raises(ValueError, match="need lr, alpha, eps, weight_decay and momentum >= 0"):
        optim.RMSprop([param], lr=-1)


def test_module_to_device_and_dtype():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.LayerNorm(4))
    assert model.to("cpu") is model and model.cpu() is model
    with pytest.raises(ValueError, match="CPU only"):
        model.to("cuda")
    model.double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model[1].running_mean.dtype == np.float64
    assert model[1].num_batches_tracked.dtype == np.int64
    out = model(ndl.ones(5, 3, dtype=np.float64))
    assert out.dtype == np.float64
    out.sum().backward()
    assert model[0].weight.grad.dtype == np.float64
    assert model.float()[0].weight.dtype == np.float32


# ---------------------------------------------------------------------- review findings
def test_where_with_two_numbers_and_a_0d_condition():
    out = ndl.where(np.array([True, False]), 1.0, 0.0)
    assert out.dtype == np.float32 and list(out.data) == [1.0, 0.0]
    (index,) = ndl.where(ndl.tensor(True))
    assert list(index.data) == [0]


def test_python_floats_meeting_integer_tensors_make_float32():
    ints = ndl.tensor([1, 2, 3])
    assert ndl.maximum(ints, 0.5).dtype == np.float32
    assert ndl.where(np.array([True, False, True]), ints, 0.5).dtype == np.float32
    assert (ints * 0.5).dtype == np.float32
    np.testing.assert_array_equal((ints * 0.5).data, [0.5, 1.0, 1.5])


def test_casts_to_integers_leave_the_graph():
    t = ndl.tensor([1.5, 2.5], requires_grad=True)
    as_int = t.to(np.int64)
    assert as_int.dtype == np.int64 and not as_int.requires_grad
    copied = t.to("cpu", copy=True)
    assert copied is not t and copied.requires_grad


def test_module_to_refuses_integer_dtypes_and_bound_parameters():
    with pytest.raises(TypeError, match="only casts to floating-point dtypes"):
        nn.Linear(2, 2).to(np.int64)
    layer = nn.Linear(3, 2)
    layer(ndl.ones(1, 3)).sum().backward()
    layer.double()
    assert layer.weight.grad.dtype == np.float64  # the gradient is cast too
    optim.SGD(layer.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="cast the model first, then build the optimizer"):
        layer.float()


@pytest.mark.parametrize("call, error, message", [
    (lambda: F.embedding(np.array([0]), ndl.zeros(3), padding_idx=None), ValueError,
     "weight must be 2-D"),
    (lambda: F.embedding(np.array([0]), ndl.zeros(3, 2), padding_idx=5), ValueError,
     r"padding_idx must lie in \[-3, 3\)"),
    (lambda: F.layer_norm(ndl.zeros(4, 2, 3), (2, 3), ndl.ones(3)), ValueError,
     r"weight must have the normalized shape \(2, 3\)"),
    (lambda: F.layer_norm(ndl.zeros(4, 2), ()), ValueError, "at least one dim"),
    (lambda: F.avg_pool2d(ndl.zeros(1, 1, 4, 4), 2, divisor_override=1.5), ValueError,
     "divisor_override must be a positive integer"),
    (lambda: F.interpolate(ndl.zeros(1, 1, 2, 2), size=4, recompute_scale_factor=True),
     ValueError, "with size= leave it None"),
    (lambda: F.max_pool2d(ndl.zeros(1, 1, 4, 4), 2.0), ValueError,
     "kernel_size must be an int >= 1 or a pair of them, got 2.0"),
    (lambda: ndl.zeros(2, size=(2,)), TypeError, "positionally or as size=, not both"),
    (lambda: ndl.randint(3, (2,), high=4), TypeError, "high given twice"),
])
def test_arguments_pytorch_refuses_are_refused_in_one_line(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_creation_keywords_as_pytorch():
    assert ndl.zeros(size=(2, 3)).shape == ndl.randn(size=(2, 3)).shape == (2, 3)
    assert list(ndl.arange(end=3).data) == [0, 1, 2]
    drawn = ndl.randint(low=2, high=4, size=(50,)).data
    assert drawn.min() >= 2 and drawn.max() <= 3
    drawn = ndl.randint(5, 7, size=(50,)).data
    assert drawn.min() >= 5 and drawn.max() <= 6


# ---------------------------------------------------------------------- a fresh-eyes port
def test_reductions_take_pytorchs_dim_and_keepdim():
    x = ndl.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 5.0]], requires_grad=True)
    assert x.sum(dim=1, keepdim=True).shape == (2, 1) and ndl.mean(x, dim=0).shape == (3,)
    values, indices = ndl.max(x, dim=1)
    assert list(values.data) == [3, 5] and list(indices.data) == [1, 2]
    assert indices.dtype == np.int64
    values.sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 1, 0], [0, 0, 1]])  # the first largest alone
    assert x.argmax().item() == 5 and list(x.argmax(dim=1).data) == [1, 2]
    with pytest.raises(TypeError, match="axis= or dim=, not both"):
        x.sum(axis=0, dim=0)


def test_the_functional_losses_reduce_to_the_mean_by_default():
    logits = ndl.randn(4, 3, requires_grad=True)
    loss = F.cross_entropy(logits, np.array([0, 1, 2, 1]))
    assert loss.shape == ()
    loss.backward()
    assert F.cross_entropy(logits, np.array([0, 1, 2, 1]), reduction="none").shape == (4,)
    assert F.mse_loss(ndl.ones(3), np.zeros(3)).item() == 1.0
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.mse_loss(ndl.ones(3), np.zeros(3), reduction="avg")


def test_pytorch_idioms_a_port_starts_with():
    import numpy_dl.nn.functional as nn_functional
    assert nn_functional.max_pool2d is F.max_pool2d and nn.functional is nn_functional
    assert isinstance(nn.MSELoss(), NLLLoss.__mro__[1]) and nn.NLLLoss is NLLLoss
    device = "cuda" if ndl.cuda.is_available() else "cpu"
    assert device == "cpu" and ndl.cuda.device_count() == 0
    array = np.arange(3.0)
    shared = ndl.from_numpy(array)
    array[0] = 7.0
    assert shared.dtype == np.float64 and shared.data[0] == 7.0  # no copy, as PyTorch
    t = ndl.zeros(2).requires_grad_()
    assert t.requires_grad and ndl.tensor([1.5]).long().dtype == np.int64
    with pytest.raises(TypeError, match="floating-point dtype"):
        ndl.tensor([1]).requires_grad_()
