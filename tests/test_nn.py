"""nn: PyTorch's names, repr, modes, initialisation, BatchNorm, state_dict and utilities.

PyTorch's numbers were checked by hand once and are written here as plain NumPy."""
import math

import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl import functional as F
from numpy_dl import nn
from numpy_dl.autograd import Tensor
from numpy_dl.nn.utils import clip_grad_norm_
from numpy_dl.optim import SGD


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU())
        self.fc_mu = nn.Linear(3, 2)
        self.decoder = nn.Sequential(nn.Sequential(nn.Linear(2, 4)), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.fc_mu(self.encoder(x)))


# PyTorch's state_dict() of the same structure, in PyTorch's order.
NET_STATE_KEYS = [
    "encoder.0.weight", "encoder.0.bias", "encoder.1.weight", "encoder.1.bias",
    "encoder.1.running_mean", "encoder.1.running_var", "encoder.1.num_batches_tracked",
    "fc_mu.weight", "fc_mu.bias", "decoder.0.0.weight", "decoder.0.0.bias"]


# ---------------------------------------------------------------------- names
def test_sequential_state_dict_names():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    state = model.state_dict()
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert state["0.weight"].shape == (3, 4) and state["2.bias"].shape == (2,)
    assert all(v.dtype == np.float32 for v in state.values())


def test_nested_names_follow_pytorch():
    net = Net()
    assert list(net.state_dict()) == NET_STATE_KEYS
    assert [n for n, _ in net.named_parameters()] == [k for k in NET_STATE_KEYS if "running" not in k
                                                      and "num_batches" not in k]
    assert len(list(net.parameters())) == 8
    assert [n for n, _ in net.named_children()] == ["encoder", "fc_mu", "decoder"]
    assert list(net.children())[1] is net.fc_mu
    names = [n for n, _ in net.named_modules()]
    assert names[:3] == ["", "encoder", "encoder.0"] and "decoder.0.0" in names


def test_shared_parameters_are_listed_once():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]


def test_a_parameter_scaled_in_place_stays_registered_and_optimized():
    layer = nn.Linear(3, 2)
    optimizer = SGD(layer.parameters(), lr=0.1)
    weight, before = layer.weight, layer.weight.data.copy()
    with ndl.no_grad():
        layer.weight *= 0.5
        layer.bias -= 1
    assert layer.weight is weight and [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert np.allclose(optimizer.flat_groups[0].data[:6], 0.5 * before.ravel())
    assert layer.weight.data.base is optimizer.flat_groups[0].data
    with pytest.raises(RuntimeError, match=r"in-place multiply on a parameter while gradients "
                                           r"are recorded; do it inside .*no_grad"):
        layer.weight *= 2


def test_assignments_that_would_drop_a_parameter_or_module_are_errors():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with pytest.raises(TypeError, match="cannot assign Tensor as parameter 'weight'; "
                                        "expected a Parameter or None"):
        model[0].weight = model[0].weight * 2
    with pytest.raises(TypeError, match="cannot assign int as child module '1'"):
        setattr(model, "1", 3)
    with pytest.raises(TypeError, match="cannot assign list as buffer 'running_mean'"):
        model[1].running_mean = [0.0, 0.0]
    model[1].running_mean = ndl.tensor([1.0, 2.0])  # a buffer holds the tensor's array
    model[1].num_batches_tracked = model[1].num_batches_tracked + 1  # a NumPy scalar
    state = model.state_dict()
    assert np.allclose(state["1.running_mean"], [1.0, 2.0]) and state["1.num_batches_tracked"] == 1
    model[0].bias = None
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "1.weight", "1.bias"]


def test_tied_weights_appear_under_each_name_in_the_state_dict_as_in_pytorch():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[1].weight = model[0].weight
    shared = nn.Linear(2, 2)
    twice = nn.Sequential(shared, nn.ReLU(), shared)
    assert list(model.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert list(twice.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    state = model.state_dict()
    state["0.weight"] = state["1.weight"] = np.full((2, 2), 3.0, np.float32)
    model.load_state_dict(state)
    assert np.all(model[1].weight.data == 3.0) and model[1].weight is model[0].weight
    del state["1.weight"]
    with pytest.raises(RuntimeError, match=r"missing keys \['1.weight'\]"):
        model.load_state_dict(state)


def test_state_dict_returns_copies():
    model = nn.Linear(2, 2)
    state = model.state_dict()
    state["weight"][...] = 99
    assert not np.any(model.weight.data == 99)


def test_module_list_registers_its_modules():
    layers = nn.ModuleList([nn.Linear(2, 3), nn.Linear(3, 1)])
    layers.append(nn.Linear(1, 1))
    assert len(layers) == 3 and isinstance(layers[1], nn.Linear)
    assert [n for n, _ in layers.named_parameters()][:2] == ["0.weight", "0.bias"]
    assert len(layers[:2]) == 2


def test_sequential_indexing_and_append():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    assert isinstance(model[-1], nn.ReLU) and len(model) == 2
    assert isinstance(model[:1], nn.Sequential) and len(model[:1]) == 1
    model.append(nn.Linear(3, 1))
    assert list(model.state_dict())[-1] == "2.bias"
    assert model(np.ones((5, 2), dtype=np.float32)).shape == (5, 1)


def test_sequential_slice_keeps_pytorch_names():
    model = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 3))
    tail = model[1:]
    assert list(tail.state_dict()) == ["2.weight", "2.bias"]
    assert tail[1] is model[2]
    assert repr(tail).splitlines()[1] == "  (1): ReLU()"
    assert tail(np.ones((4, 2), dtype=np.float32)).shape == (4, 3)
    assert list(nn.ModuleList(list(model))[1:].state_dict()) == ["1.weight", "1.bias"]


@pytest.mark.parametrize("layer", [lambda: nn.Linear(6, 5),
                                   lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1),
                                   lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)])
def test_sequential_relu_overwrites_the_layer_output_with_the_same_gradients(layer):
    ndl.manual_seed(0)
    first, second = layer(), nn.Tanh()
    x = np.random.default_rng(0).standard_normal((4, 6) if isinstance(first, nn.Linear)
                                                 else (4, 2, 5, 5)).astype(np.float32)
    model = nn.Sequential(first, nn.ReLU(), second)
    out = model(ndl.tensor(x, requires_grad=True))
    relu_node = out._parents[0]
    assert np.shares_memory(relu_node.data, relu_node._parents[0].data)  # one array, not two
    out.sum().backward()
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    separate = second(F.relu(first(ndl.tensor(x))))  # the functional ReLU: new memory
    np.testing.assert_array_equal(separate.data, out.data)
    separate.sum().backward()
    for grad, param in zip(grads, model.parameters()):
        np.testing.assert_array_equal(grad, param.grad)


def test_relu_in_place_refuses_a_leaf_that_requires_grad():
    leaf = ndl.tensor([-1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="inplace=True.*leaf that requires grad"):
        F.relu(leaf, inplace=True)
    np.testing.assert_array_equal(leaf.data, [-1.0, 2.0])


def test_sequential_relu_after_other_layers_keeps_their_outputs():
    sigmoid = nn.Sigmoid()  # its backward reads its output: a ReLU must not overwrite it
    model = nn.Sequential(sigmoid, nn.ReLU())
    x = ndl.tensor(np.linspace(-2, 2, 8, dtype=np.float32), requires_grad=True)
    out = model(x)
    assert not np.shares_memory(out.data, out._parents[0].data)
    out.sum().backward()
    s = 1 / (1 + np.exp(-x.data))
    np.testing.assert_allclose(x.grad, s * (1 - s), rtol=1e-6)


def test_assigning_before_super_init_is_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)
    with pytest.raises(AttributeError, match="super"):
        Broken()


# ---------------------------------------------------------------------- repr
def test_repr_matches_pytorch():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 4)), nn.ReLU(),
                          nn.Conv2d(1, 8, (3, 5), bias=False),
                          nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1),
                          nn.LeakyReLU(0.2), nn.Flatten(), nn.Unflatten(1, (2, 3)))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Sequential(\n"
        "    (0): Linear(in_features=2, out_features=4, bias=True)\n"
        "  )\n"
        "  (1): ReLU()\n"
        "  (2): Conv2d(1, 8, kernel_size=(3, 5), stride=(1, 1), bias=False)\n"
        "  (3): ConvTranspose2d(8, 1, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
        "output_padding=(1, 1))\n"
        "  (4): LeakyReLU(negative_slope=0.2)\n"
        "  (5): Flatten(start_dim=1, end_dim=-1)\n"
        "  (6): Unflatten(dim=1, unflattened_size=(2, 3))\n"
        ")")
    assert repr(nn.BatchNorm2d(8)).startswith("BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True")
    assert repr(nn.Dropout(0.2)).startswith("Dropout(p=0.2")


# ---------------------------------------------------------------------- modes
def test_train_and_eval_propagate():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.train(False)
    assert not net.decoder[0][0].training


def test_requires_grad_and_zero_grad():
    net = Net()
    out = net(np.ones((3, 4), dtype=np.float32)).sum()
    out.backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.encoder.requires_grad_(False)
    net(np.ones((3, 4), dtype=np.float32)).sum().backward()
    assert net.encoder[0].weight.grad is None and net.fc_mu.weight.grad is not None


# ---------------------------------------------------------------------- init
def _check_uniform(values, bound):
    """Inside [-bound, bound] and spread over it, so a wrong fan-in shows either way."""
    values = np.asarray(values)
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.9 * bound
    np.testing.assert_allclose(values.std(), bound / math.sqrt(3), rtol=0.15)


def test_linear_init_bounds():
    ndl.manual_seed(0)
    layer = nn.Linear(50, 400)
    assert layer.weight.shape == (400, 50) and layer.weight.dtype == np.float32
    _check_uniform(layer.weight.data, 1 / math.sqrt(50))
    _check_uniform(layer.bias.data, 1 / math.sqrt(50))


def test_conv2d_init_bounds():
    ndl.manual_seed(1)
    layer = nn.Conv2d(3, 200, (3, 5))
    _check_uniform(layer.weight.data, 1 / math.sqrt(3 * 15))
    _check_uniform(layer.bias.data, 1 / math.sqrt(3 * 15))


def test_conv_transpose2d_init_uses_out_channels_as_fan_in():
    """PyTorch's fan-in for ConvTranspose2d's (in, out, kh, kw) weight is out*kh*kw."""
    ndl.manual_seed(2)
    layer = nn.ConvTranspose2d(4, 200, (3, 2))
    assert layer.weight.shape == (4, 200, 3, 2)
    _check_uniform(layer.weight.data, 1 / math.sqrt(200 * 6))
    _check_uniform(layer.bias.data, 1 / math.sqrt(200 * 6))


def test_init_is_repeatable_under_manual_seed():
    ndl.manual_seed(42)
    a = Net().state_dict()
    ndl.manual_seed(42)
    b = Net().state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = Net().state_dict()
    assert not np.array_equal(a["fc_mu.weight"], c["fc_mu.weight"])


def test_init_functions_follow_pytorch_formulas():
    init = nn.init
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("relu") == math.sqrt(2)
    np.testing.assert_allclose(init.calculate_gain("leaky_relu", 0.2), 1.3867504905630728)
    np.testing.assert_allclose(init.calculate_gain("leaky_relu"), 1.4141428569978354)
    assert init.calculate_gain("sigmoid") == 1
    with pytest.raises(ValueError):
        init.calculate_gain("swish")
    w = nn.Parameter(np.zeros((30, 20, 3, 3), dtype=np.float32))
    assert init.calculate_fan_in_and_fan_out(w) == (180, 270)
    ndl.manual_seed(3)
    _check_uniform(init.xavier_uniform_(w, gain=2.0).data, 2.0 * math.sqrt(6 / (180 + 270)))
    _check_uniform(init.kaiming_uniform_(w, nonlinearity="relu").data, math.sqrt(6 / 180))
    _check_uniform(init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu").data,
                   math.sqrt(6 / 270))
    init.normal_(w, 1.0, 0.5)
    np.testing.assert_allclose([w.data.mean(), w.data.std()], [1.0, 0.5], atol=0.02)
    assert w.data.dtype == np.float32
    np.testing.assert_array_equal(init.zeros_(w).data, 0)
    np.testing.assert_array_equal(init.ones_(w).data, 1)
    with pytest.raises(ValueError):
        init.calculate_fan_in_and_fan_out(nn.Parameter(np.zeros(3, dtype=np.float32)))


def test_batchnorm_init():
    bn = nn.BatchNorm2d(3)
    np.testing.assert_array_equal(bn.weight.data, 1)
    np.testing.assert_array_equal(bn.bias.data, 0)
    np.testing.assert_array_equal(bn.running_mean, 0)
    np.testing.assert_array_equal(bn.running_var, 1)
    assert bn.num_batches_tracked == 0


# ---------------------------------------------------------------------- layers
def test_linear_bad_input_names_layer_and_shapes():
    layer = nn.Linear(784, 512)
    with pytest.raises(ValueError) as info:
        layer(np.zeros((128, 28, 28), dtype=np.float32))
    message = str(info.value)
    assert "Linear" in message and "784" in message and "(128, 28, 28)" in message


def test_linear_values_and_batch_dims():
    layer = nn.Linear(3, 2)
    x = np.random.default_rng(0).standard_normal((4, 5, 3)).astype(np.float32)
    out = layer(x)
    assert out.shape == (4, 5, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out.data, x @ layer.weight.data.T + layer.bias.data, rtol=1e-5)
    assert nn.Linear(3, 2, bias=False).bias is None


def test_activation_layers():
    x = np.array([-2.0, 0.0, 3.0], dtype=np.float32)
    np.testing.assert_allclose(nn.ReLU()(x).data, [0, 0, 3])
    np.testing.assert_allclose(nn.LeakyReLU(0.1)(x).data, [-0.2, 0, 3], rtol=1e-6)
    np.testing.assert_allclose(nn.LeakyReLU()(x).data, [-0.02, 0, 3], rtol=1e-6)
    np.testing.assert_allclose(nn.Sigmoid()(x).data, 1 / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(nn.Tanh()(x).data, np.tanh(x), rtol=1e-6)
    t = ndl.tensor(x)
    assert nn.Identity()(t) is t


def test_dropout_train_and_eval():
    layer = nn.Dropout(0.25)
    x = ndl.tensor(np.ones((200, 50)), requires_grad=True)
    ndl.manual_seed(0)
    out = layer(x)
    zeros = np.mean(out.data == 0)
    assert 0.2 < zeros < 0.3
    np.testing.assert_allclose(out.data[out.data != 0], 1 / 0.75, rtol=1e-6)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, out.data)  # the same mask, the same scale
    ndl.manual_seed(0)
    np.testing.assert_array_equal(layer(x).data, out.data)
    layer.eval()
    np.testing.assert_array_equal(layer(x).data, x.data)
    assert np.all(nn.Dropout(1.0)(x).data == 0)
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(1.5)


def test_flatten_and_unflatten():
    x = ndl.tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
    flat = nn.Flatten()(x)
    assert flat.shape == (2, 12)
    np.testing.assert_array_equal(flat.data, x.data.reshape(2, 12))
    assert nn.Flatten(0)(x).shape == (24,)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)
    back = nn.Unflatten(1, (3, 4))(flat)
    assert back.shape == (2, 3, 4)
    assert nn.Unflatten(-1, (2, 6))(flat).shape == (2, 2, 6)
    (back * back).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data)
    with pytest.raises(ValueError, match=r"Unflatten.*12"):
        nn.Unflatten(1, (5, 2))(flat)


# ---------------------------------------------------------------------- BatchNorm
def test_batchnorm1d_training_statistics_and_output():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((8, 3)) * 2 + 1).astype(np.float32)
    bn = nn.BatchNorm1d(3, momentum=0.2)
    bn.weight.data[...] = [1.0, 2.0, 0.5]
    bn.bias.data[...] = [0.0, -1.0, 3.0]
    out = bn(x)
    mean, var = x.mean(0), x.var(0)
    expected = (x - mean) / np.sqrt(var + 1e-5) * bn.weight.data + bn.bias.data
    np.testing.assert_allclose(out.data, expected, rtol=1e-4, atol=1e-5)
    # running stats: momentum-weighted, with the unbiased variance, as PyTorch
    np.testing.assert_allclose(bn.running_mean, 0.2 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.8 + 0.2 * x.var(0, ddof=1), rtol=1e-5)
    assert bn.num_batches_tracked == 1
    bn(x)
    np.testing.assert_allclose(bn.running_mean, 0.2 * mean + 0.8 * 0.2 * mean, rtol=1e-5)
    assert bn.num_batches_tracked == 2
    assert bn.running_mean.dtype == np.float32


def test_batchnorm2d_eval_uses_running_statistics():
    rng = np.random.default_rng(1)
    bn = nn.BatchNorm2d(2)
    for _ in range(3):
        bn(rng.standard_normal((4, 2, 3, 3)).astype(np.float32))
    running_mean, running_var = bn.running_mean.copy(), bn.running_var.copy()
    bn.eval()
    x = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    out = bn(x)
    shape = (1, 2, 1, 1)
    expected = (x - running_mean.reshape(shape)) / np.sqrt(running_var.reshape(shape) + 1e-5)
    np.testing.assert_allclose(out.data, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(bn.running_mean, running_mean)  # eval does not update
    assert bn.num_batches_tracked == 3
    single = bn(x[:1, :, :1, :1])  # one value per channel is fine in eval
    assert single.shape == (1, 2, 1, 1)


def test_batchnorm2d_training_normalises_per_channel():
    x = np.random.default_rng(2).standard_normal((3, 2, 4, 5)).astype(np.float32) * 3 + 2
    out = nn.BatchNorm2d(2)(x).data
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, atol=1e-3)


def test_batchnorm_options_and_errors():
    bn = nn.BatchNorm1d(3, affine=False, track_running_stats=False)
    assert list(bn.parameters()) == [] and list(bn.state_dict()) == []
    x = np.random.default_rng(3).standard_normal((5, 3)).astype(np.float32)
    bn.eval()  # no running stats: batch statistics even in eval, as PyTorch
    np.testing.assert_allclose(bn(x).data, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-4,
                               atol=1e-5)
    with pytest.raises(ValueError, match=r"BatchNorm2d.*\(4, 3, 5\)"):
        nn.BatchNorm2d(3)(np.zeros((4, 3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d.*\(4, 2\)"):
        nn.BatchNorm1d(3)(np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="more than one value"):
        nn.BatchNorm1d(3)(np.zeros((1, 3), dtype=np.float32))


# ---------------------------------------------------------------------- load_state_dict
def test_load_state_dict_round_trip_in_place():
    ndl.manual_seed(0)
    source = Net()
    source(np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32))  # moves BN stats
    target = Net()
    weight = target.fc_mu.weight
    memory = weight.data
    result = target.load_state_dict(source.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert target.fc_mu.weight is weight and weight.data is memory
    for key, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[key], value)


def test_load_state_dict_strict_errors_name_keys():
    net = Net()
    state = net.state_dict()
    del state["fc_mu.bias"]
    state["extra.weight"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(RuntimeError) as info:
        Net().load_state_dict(state)
    assert "fc_mu.bias" in str(info.value) and "extra.weight" in str(info.value)
    result = Net().load_state_dict(state, strict=False)
    assert result.missing_keys == ["fc_mu.bias"] and result.unexpected_keys == ["extra.weight"]


def test_load_state_dict_shape_mismatch_names_key_and_shapes():
    state = nn.Sequential(nn.Linear(4, 3)).state_dict()
    state["0.weight"] = np.zeros((5, 4), dtype=np.float32)
    model = nn.Sequential(nn.Linear(4, 3))
    before = model.state_dict()
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(state, strict=False)
    message = str(info.value)
    assert "0.weight" in message and "(5, 4)" in message and "(3, 4)" in message
    assert np.array_equal(model.state_dict()["0.bias"], before["0.bias"])  # nothing half-loaded


# ---------------------------------------------------------------------- clip_grad_norm_
def _params_with_grads(*grads):
    params = [nn.Parameter(np.zeros(len(g), dtype=np.float32)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = np.array(g, dtype=np.float32)
    return params


def test_clip_grad_norm_scales_to_max_norm():
    # PyTorch: norm 13 -> grads * 1 / (13 + 1e-6)
    params = _params_with_grads([3.0, 4.0], [0.0, 0.0, 12.0])
    total = clip_grad_norm_(params, 1.0)
    assert type(total) is float
    np.testing.assert_allclose(total, 13.0, rtol=1e-6)
    np.testing.assert_allclose(params[0].grad, [3 / 13, 4 / 13], rtol=1e-5)
    np.testing.assert_allclose(params[1].grad, [0, 0, 12 / 13], rtol=1e-5)
    assert params[0].grad.dtype == np.float32


def test_clip_grad_norm_leaves_small_gradients_alone():
    params = _params_with_grads([0.3, 0.4])
    np.testing.assert_allclose(clip_grad_norm_(params, 1.0), 0.5, rtol=1e-6)
    np.testing.assert_array_equal(params[0].grad, np.array([0.3, 0.4], dtype=np.float32))


def test_clip_grad_norm_inf_norm_single_tensor_and_skips_missing_grads():
    params = _params_with_grads([1.0, -6.0], [2.0])
    params.append(nn.Parameter(np.zeros(2, dtype=np.float32)))  # no grad: ignored
    np.testing.assert_allclose(clip_grad_norm_(params, 3.0, norm_type="inf"), 6.0)
    np.testing.assert_allclose(params[0].grad, [0.5, -3.0], rtol=1e-5)
    single = _params_with_grads([6.0, 8.0])[0]
    np.testing.assert_allclose(clip_grad_norm_(single, 5.0), 10.0, rtol=1e-6)
    np.testing.assert_allclose(single.grad, [3.0, 4.0], rtol=1e-5)
    with pytest.raises(RuntimeError):
        clip_grad_norm_(_params_with_grads([np.inf]), 1.0, error_if_nonfinite=True)


# ---------------------------------------------------------------------- Parameter
def test_parameter():
    p = nn.Parameter(np.ones(2, dtype=np.float32))
    assert isinstance(p, Tensor) and p.requires_grad and p.is_leaf
    assert repr(p).startswith("Parameter containing:")
    with pytest.raises(TypeError, match="floating"):
        nn.Parameter(np.ones(2, dtype=np.int64))


def test_a_layer_used_twice_gets_both_gradients_in_its_flat_slot():
    """The first gradient is computed straight into the optimizer's buffer; the second use
    must add to it, not overwrite it (the engine hands leaves their gradient at once)."""
    layer = nn.Linear(3, 3)
    optimizer = SGD(layer.parameters(), lr=0.1)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    w, b = layer.weight.data.astype(np.float64), layer.bias.data.astype(np.float64)
    hidden = x @ w.T + b
    expected_w = np.ones((4, 3)).T @ hidden + (np.ones((4, 3)) @ w).T @ x
    expected_b = 4 + (np.ones((4, 3)) @ w).sum(axis=0)
    for passes in (1, 2):  # a second backward without zero_grad accumulates on top
        layer(layer(ndl.tensor(x))).sum().backward()
        np.testing.assert_allclose(layer.weight.grad, passes * expected_w, rtol=1e-5)
        np.testing.assert_allclose(layer.bias.grad, passes * expected_b, rtol=1e-5)
        assert layer.weight.grad.base is optimizer.flat_groups[0].message


def test_a_parameter_that_is_both_input_and_weight_of_one_linear():
    """linear(W, W) = W @ W.T: both parents are the same leaf, so its weight gradient
    must not be computed into the slot that the input gradient lands in first."""
    layer = nn.Linear(3, 3)
    SGD(layer.parameters(), lr=0.1)
    g = np.random.default_rng(1).normal(size=(3, 3)).astype(np.float32)
    w = layer.weight.data.astype(np.float64)
    F.linear(layer.weight, layer.weight).backward(g)
    np.testing.assert_allclose(layer.weight.grad, g @ w + g.T @ w, rtol=1e-5)
    F.linear(layer.bias, layer.weight, layer.bias).backward(g[0])
    np.testing.assert_allclose(layer.bias.grad, g[0] @ w + g[0], rtol=1e-5)


def test_batch_norm_momentum_none_is_a_cumulative_average():
    bn = nn.BatchNorm1d(2, momentum=None)
    batches = [np.random.default_rng(i).normal(i, 1, size=(5, 2)).astype(np.float32)
               for i in range(3)]
    for batch in batches:
        bn(ndl.tensor(batch))
    np.testing.assert_allclose(bn.running_mean, np.mean([b.mean(0) for b in batches], axis=0),
                               rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, np.mean([b.var(0, ddof=1) for b in batches],
                                                       axis=0), rtol=1e-5)
