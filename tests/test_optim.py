"""Optimizers against PyTorch's update rules written out in NumPy float64, their param
groups, state_dict round trips, skipped parameters, and the learning-rate schedulers."""
import math

import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl import nn
from numpy_dl.optim import SGD, Adam, AdamW, lr_scheduler

SHAPES = [(3,), (2, 2)]
START = [np.array([1.0, -2.0, 0.5]), np.array([[0.3, -0.7], [2.0, -1.5]])]
CURVATURE = [np.array([1.0, 3.0, 0.5]), np.array([[2.0, 0.2], [1.0, 4.0]])]
CENTRE = [np.array([0.5, 0.5, -1.0]), np.array([[0.0, 1.0], [-1.0, 0.25]])]


def quadratic_grad(i, w):
    """The gradient of 0.5 * sum(curvature * (w - centre)**2) for parameter i."""
    return CURVATURE[i] * (w - CENTRE[i])


# ---------------------------------------------------------------------- references
def ref_sgd(steps, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
            present=None):
    """PyTorch's SGD, in float64; present[step][i] says whether parameter i has a gradient."""
    params = [w.copy() for w in START]
    buffers = [None] * len(params)
    for step in range(steps):
        for i, w in enumerate(params):
            if present is not None and not present[step][i]:
                continue
            d = quadratic_grad(i, w)
            if weight_decay:
                d = d + weight_decay * w
            if momentum:
                if buffers[i] is None:
                    buffers[i] = d.copy()
                else:
                    buffers[i] = momentum * buffers[i] + (1 - dampening) * d
                d = d + momentum * buffers[i] if nesterov else buffers[i]
            w -= lr * d
    return params


def ref_adam(steps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
             decoupled=False, present=None, lrs=None):
    """PyTorch's Adam (decoupled=False) and AdamW (True), in float64."""
    b1, b2 = betas
    params = [w.copy() for w in START]
    state = [dict(step=0, m=np.zeros_like(w), v=np.zeros_like(w), vmax=np.zeros_like(w))
             for w in params]
    for step in range(steps):
        rate = lrs[step] if lrs is not None else lr
        for i, w in enumerate(params):
            if present is not None and not present[step][i]:
                continue
            s = state[i]
            g = quadratic_grad(i, w)
            if weight_decay and decoupled:
                w *= 1 - rate * weight_decay
            elif weight_decay:
                g = g + weight_decay * w
            s["step"] += 1
            s["m"] = b1 * s["m"] + (1 - b1) * g
            s["v"] = b2 * s["v"] + (1 - b2) * g * g
            second = s["v"]
            if amsgrad:
                s["vmax"] = np.maximum(s["vmax"], s["v"])
                second = s["vmax"]
            bias1, bias2 = 1 - b1 ** s["step"], 1 - b2 ** s["step"]
            denom = np.sqrt(second) / math.sqrt(bias2) + eps
            w -= rate / bias1 * s["m"] / denom
    return params


# ---------------------------------------------------------------------- harness
def make_params():
    return [nn.Parameter(w.astype(np.float32)) for w in START]


def compute_grads(params, present=None):
    """Backpropagate the quadratic through autograd (only into the present parameters)."""
    loss = None
    for i, p in enumerate(params):
        if present is not None and not present[i]:
            continue
        diff = p - ndl.tensor(CENTRE[i])
        term = (ndl.tensor(CURVATURE[i]) * diff * diff).sum() * 0.5
        loss = term if loss is None else loss + term
    if loss is not None:
        loss.backward()


def run(optimizer_cls, steps, present=None, params=None, optimizer=None, **options):
    params = params if params is not None else make_params()
    optimizer = optimizer if optimizer is not None else optimizer_cls(params, **options)
    for step in range(steps):
        optimizer.zero_grad()
        compute_grads(params, present[step] if present is not None else None)
        optimizer.step()
    return params, optimizer


def assert_close(params, expected):
    for p, w in zip(params, expected):
        assert p.data.dtype == np.float32
        np.testing.assert_allclose(p.data, w, rtol=2e-5, atol=2e-6)


def test_reference_matches_pytorch_numbers():
    """The references themselves, against trajectories PyTorch printed for these settings."""
    np.testing.assert_allclose(ref_sgd(3, lr=0.1, momentum=0.9)[0],
                               [0.743, 1.195, 0.0970625], rtol=1e-12)
    np.testing.assert_allclose(ref_adam(2, lr=0.1)[0],
                               [0.8011874237306403, -1.8001271882463328, 0.3002390643206104],
                               rtol=1e-12)


# ---------------------------------------------------------------------- trajectories
SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.8, dampening=0.3),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, weight_decay=0.2),
    dict(lr=0.05, momentum=0.5, weight_decay=0.1, nesterov=True),
    dict(lr=0.05, momentum=0.7, dampening=0.5, weight_decay=0.3),
]


@pytest.mark.parametrize("options", SGD_CASES, ids=str)
def test_sgd_matches_reference(options):
    params, _ = run(SGD, 8, **options)
    assert_close(params, ref_sgd(8, **options))


ADAM_CASES = [
    dict(lr=0.1),
    dict(),
    dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6),
    dict(lr=0.1, weight_decay=0.2),
    dict(lr=0.2, betas=(0.5, 0.9), amsgrad=True),
    dict(lr=0.1, betas=(0.5, 0.9), weight_decay=0.1, amsgrad=True),
]


@pytest.mark.parametrize("options", ADAM_CASES, ids=str)
def test_adam_matches_reference(options):
    params, _ = run(Adam, 8, **options)
    assert_close(params, ref_adam(8, **options))


@pytest.mark.parametrize("options", [dict(lr=0.1), dict(lr=0.1, weight_decay=0.3),
                                     dict(lr=0.2, betas=(0.5, 0.9), weight_decay=0.1, amsgrad=True),
                                     dict()], ids=str)
def test_adamw_matches_reference(options):
    params, _ = run(AdamW, 8, **options)
    expected = ref_adam(8, decoupled=True, **{"weight_decay": 0.01, **options})
    assert_close(params, expected)


def test_amsgrad_changes_the_trajectory():
    """Guard that the amsgrad cases really exercise the running maximum."""
    for a, b in zip(ref_adam(8, lr=0.2, betas=(0.5, 0.9), amsgrad=True),
                    ref_adam(8, lr=0.2, betas=(0.5, 0.9))):
        assert np.abs(a - b).max() > 1e-3


def test_defaults_are_pytorchs():
    params = make_params()
    assert SGD(params).defaults == dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                                        nesterov=False)
    adam = Adam(make_params()).param_groups[0]
    assert (adam["lr"], adam["betas"], adam["eps"], adam["weight_decay"], adam["amsgrad"]) == \
        (1e-3, (0.9, 0.999), 1e-8, 0.0, False)
    assert AdamW(make_params()).param_groups[0]["weight_decay"] == 0.01


# ---------------------------------------------------------------------- param groups
def test_changing_lr_takes_effect():
    lrs = [0.1, 0.1, 0.1, 0.02, 0.02, 0.3]
    params = make_params()
    optimizer = Adam(params, lr=0.1)
    for lr in lrs:
        optimizer.param_groups[0]["lr"] = lr
        run(None, 1, params=params, optimizer=optimizer)
    assert_close(params, ref_adam(len(lrs), lrs=lrs))
    # lr = 0 freezes plain SGD
    frozen = make_params()
    sgd = SGD(frozen, lr=0.0)
    run(None, 2, params=frozen, optimizer=sgd)
    np.testing.assert_array_equal(frozen[0].data, START[0].astype(np.float32))


def test_param_groups_with_own_options():
    a, b = make_params()
    optimizer = SGD([{"params": [a], "lr": 0.5}, {"params": [b]}], lr=0.1, momentum=0.9)
    assert optimizer.param_groups[0]["lr"] == 0.5 and optimizer.param_groups[1]["lr"] == 0.1
    assert optimizer.param_groups[0]["momentum"] == 0.9
    run(None, 3, params=[a, b], optimizer=optimizer)
    np.testing.assert_allclose(a.data, ref_sgd(3, lr=0.5, momentum=0.9)[0], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(b.data, ref_sgd(3, lr=0.1, momentum=0.9)[1], rtol=2e-5, atol=2e-6)


def test_optimizer_takes_module_parameters_generator():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    optimizer = Adam(model.parameters(), lr=0.01)
    assert len(optimizer.param_groups[0]["params"]) == 4
    before = model.state_dict()
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    model(x).sum().backward()
    optimizer.step()
    after = model.state_dict()
    assert all(not np.array_equal(before[k], after[k]) for k in ("0.weight", "2.bias"))
    assert all(v.dtype == np.float32 for v in after.values())


def test_add_param_group():
    a, b = make_params()
    optimizer = SGD([a], lr=0.1)
    optimizer.add_param_group({"params": [b], "lr": 0.5, "momentum": 0.9})
    assert optimizer.param_groups[1]["lr"] == 0.5 and optimizer.param_groups[1]["dampening"] == 0
    run(None, 3, params=[a, b], optimizer=optimizer)
    np.testing.assert_allclose(a.data, ref_sgd(3, lr=0.1)[0], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(b.data, ref_sgd(3, lr=0.5, momentum=0.9)[1], rtol=2e-5, atol=2e-6)
    with pytest.raises(ValueError, match="more than one"):
        optimizer.add_param_group({"params": [a]})
    with pytest.raises(TypeError, match="dtype"):
        SGD([nn.Parameter(np.zeros(2, np.float32)), nn.Parameter(np.zeros(2, np.float64))])


# ---------------------------------------------------------------------- gradients
def test_accumulated_gradients_and_manual_grads():
    """Two backward passes accumulate before a step; a gradient assigned by hand counts."""
    params = make_params()
    optimizer = SGD(params, lr=0.1)
    compute_grads(params)
    compute_grads(params)
    optimizer.step()
    expected = [w - 0.1 * 2 * quadratic_grad(i, w) for i, w in enumerate(START)]
    assert_close(params, expected)

    manual = make_params()
    optimizer = SGD(manual, lr=0.1)
    manual[0].grad = np.ones(3, dtype=np.float32)
    optimizer.step()
    np.testing.assert_allclose(manual[0].data, START[0] - 0.1, rtol=1e-6)
    np.testing.assert_array_equal(manual[1].data, START[1].astype(np.float32))


def test_zero_grad():
    params = make_params()
    optimizer = SGD(params, lr=0.1)
    compute_grads(params)
    optimizer.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params)
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)


def test_rebinding_data_is_picked_up():
    params = make_params()
    optimizer = SGD(params, lr=0.1)
    params[0].data = np.zeros(3, dtype=np.float32)
    params[0].grad = np.ones(3, dtype=np.float32)
    optimizer.step()
    np.testing.assert_allclose(params[0].data, -0.1)


@pytest.mark.parametrize("cls, options, reference", [
    (SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1), ref_sgd),
    (Adam, dict(lr=0.1, betas=(0.5, 0.9), weight_decay=0.1, amsgrad=True), ref_adam),
    (AdamW, dict(lr=0.1, weight_decay=0.1), lambda steps, **o: ref_adam(steps, decoupled=True, **o)),
])
def test_parameters_without_grad_are_skipped(cls, options, reference):
    """Like PyTorch: no update, no weight decay and no state advance for a missing grad."""
    present = [(True, True), (True, False), (False, False), (True, True), (False, True),
               (True, True)]
    params, optimizer = run(cls, len(present), present=present, **options)
    assert_close(params, reference(len(present), present=present, **options))
    state = optimizer.state_dict()["state"]
    assert state[0]["step"] == 4 and state[1]["step"] == 4


def test_parameters_never_stepped_have_no_state():
    params = make_params()
    optimizer = Adam(params, lr=0.1)
    params[0].grad = np.ones(3, dtype=np.float32)
    optimizer.step()
    state = optimizer.state_dict()
    assert list(state["state"]) == [0]
    np.testing.assert_array_equal(params[1].data, START[1].astype(np.float32))


# ---------------------------------------------------------------------- state_dict
@pytest.mark.parametrize("cls, options", [
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (Adam, dict(lr=0.1, betas=(0.5, 0.9), amsgrad=True)),
    (AdamW, dict(lr=0.05, weight_decay=0.1)),
])
def test_state_dict_round_trip_continues_bit_for_bit(cls, options):
    present = [(True, True), (True, False), (True, True), (False, True), (True, True),
               (True, True), (True, False), (True, True)]
    full, _ = run(cls, len(present), present=present, **options)

    first, optimizer = run(cls, 4, present=present[:4], **options)
    saved_params = [p.data.copy() for p in first]
    saved = optimizer.state_dict()
    run(None, 4, present=present[4:], params=first, optimizer=optimizer)  # the original goes on

    resumed = [nn.Parameter(w) for w in saved_params]
    fresh = cls(resumed, **{**options, "lr": 123.0})  # the lr comes back from the state
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["lr"] == options["lr"]
    run(None, 4, present=present[4:], params=resumed, optimizer=fresh)
    for a, b, c in zip(full, resumed, first):
        assert np.array_equal(a.data, b.data)
        assert np.array_equal(a.data, c.data)


def test_state_dict_layout():
    params, optimizer = run(Adam, 2, lr=0.1)
    state = optimizer.state_dict()
    assert set(state) == {"state", "param_groups"}
    assert state["param_groups"][0]["params"] == [0, 1]
    assert state["param_groups"][0]["lr"] == 0.1
    assert state["state"][1]["step"] == 2
    assert state["state"][1]["exp_avg"].shape == (2, 2)
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}


def test_load_state_dict_rejects_other_layouts():
    _, optimizer = run(Adam, 1)
    state = optimizer.state_dict()
    with pytest.raises(ValueError, match="groups"):
        Adam([nn.Parameter(np.zeros(3, dtype=np.float32))]).load_state_dict(state)
    other = [nn.Parameter(np.zeros(4, dtype=np.float32)), nn.Parameter(np.zeros((2, 2), np.float32))]
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        Adam(other).load_state_dict(state)


def test_model_load_state_dict_reaches_optimized_parameters():
    model = nn.Linear(2, 2)
    optimizer = SGD(model.parameters(), lr=1.0)
    model.load_state_dict({"weight": np.eye(2, dtype=np.float32), "bias": np.zeros(2, np.float32)})
    model.weight.grad = np.ones((2, 2), dtype=np.float32)
    optimizer.step()
    np.testing.assert_allclose(model.weight.data, np.eye(2) - 1)


# ---------------------------------------------------------------------- errors
def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        Adam(iter([]))
    p = make_params()
    with pytest.raises(ValueError, match="more than one"):
        SGD([{"params": [p[0]]}, {"params": [p[0]]}])
    with pytest.raises(ValueError, match="lr"):
        Adam(make_params(), lr=-1)
    with pytest.raises(ValueError, match="betas"):
        Adam(make_params(), betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Nesterov"):
        SGD(make_params(), nesterov=True)
    with pytest.raises(ValueError, match="momentum"):
        SGD(make_params(), momentum=-0.5)
    with pytest.raises(ValueError, match="unknown"):
        SGD([{"params": make_params(), "mommentum": 0.9}])
    with pytest.raises(TypeError, match="Parameter"):
        SGD([np.zeros(3)])


# ---------------------------------------------------------------------- schedulers
def _lrs(make_scheduler, epochs=14, lr=0.1):
    params = make_params()
    optimizer = SGD(params, lr=lr)
    scheduler = make_scheduler(optimizer)
    values = []
    for _ in range(epochs):
        values.append(optimizer.param_groups[0]["lr"])
        assert scheduler.get_last_lr() == [values[-1]]
        optimizer.step()
        scheduler.step()
    return values


def test_step_lr():
    values = _lrs(lambda o: lr_scheduler.StepLR(o, step_size=3, gamma=0.5))
    np.testing.assert_allclose(values, [0.1 * 0.5 ** (e // 3) for e in range(14)], rtol=1e-12)
    assert values[:4] == [0.1, 0.1, 0.1, 0.05]


def test_exponential_lr():
    values = _lrs(lambda o: lr_scheduler.ExponentialLR(o, gamma=0.9))
    np.testing.assert_allclose(values, [0.1 * 0.9 ** e for e in range(14)], rtol=1e-12)


def test_cosine_annealing_lr():
    values = _lrs(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=0.01))
    # PyTorch's printed values: down to eta_min at T_max, back up to the base at 2 * T_max
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * e / 5)) / 2 for e in range(14)]
    np.testing.assert_allclose(values, expected, rtol=1e-9)
    np.testing.assert_allclose(values[:6], [0.1, 0.09140576474687263, 0.06890576474687263,
                                            0.04109423525312736, 0.018594235253127367, 0.01],
                               rtol=1e-9)
    np.testing.assert_allclose(values[10], 0.1, rtol=1e-9)
    np.testing.assert_allclose(_lrs(lambda o: lr_scheduler.CosineAnnealingLR(o, 5, 0.01), 25),
                               [0.01 + 0.09 * (1 + math.cos(math.pi * e / 5)) / 2
                                for e in range(25)], rtol=1e-12)


def two_groups():
    a, b = make_params()
    return SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}])


def test_scheduler_state_round_trip_and_groups():
    optimizer = two_groups()
    scheduler = lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for _ in range(3):
        scheduler.step()
    assert scheduler.get_last_lr() == [0.125, 0.0125]
    state = scheduler.state_dict()
    assert "optimizer" not in state

    # As in PyTorch, the rates travel with the optimizer's state, the position with the
    # scheduler's: loading only the latter continues from the optimizer's rates.
    alone, resumed = two_groups(), two_groups()
    alone_scheduler = lr_scheduler.StepLR(alone, step_size=1, gamma=0.5)
    resumed_scheduler = lr_scheduler.StepLR(resumed, step_size=1, gamma=0.5)
    resumed.load_state_dict(optimizer.state_dict())
    for each, each_scheduler in ((alone, alone_scheduler), (resumed, resumed_scheduler)):
        each_scheduler.load_state_dict(state)
        assert each_scheduler.get_last_lr() == [0.125, 0.0125]
        each_scheduler.step()
    assert [g["lr"] for g in alone.param_groups] == [0.5, 0.05]
    assert [g["lr"] for g in resumed.param_groups] == [0.0625, 0.00625]


# PyTorch 2.13's rates, printed by the same steps in torch.optim.lr_scheduler.
@pytest.mark.parametrize("make, expected", [
    (lambda o: lr_scheduler.StepLR(o, 3, 0.5), [0.1, 0.1, 0.1, 0.05, 0.5, 0.5, 0.25, 0.25]),
    (lambda o: lr_scheduler.ExponentialLR(o, 0.9),
     [0.1, 0.09, 0.081, 0.0729, 0.5, 0.45, 0.405, 0.3645]),
    (lambda o: lr_scheduler.CosineAnnealingLR(o, 5, 0.01),
     [0.1, 0.09140576474687263, 0.06890576474687263, 0.04109423525312736, 0.5, 0.01,
      0.018594235253127367, 0.04109423525312739]),
])
def test_a_rate_set_by_hand_carries_the_schedule_on_from_there(make, expected):
    optimizer = SGD(make_params(), lr=0.1)
    scheduler = make(optimizer)
    values = []
    for epoch in range(8):
        if epoch == 4:
            optimizer.param_groups[0]["lr"] = 0.5
        values.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_two_schedulers_on_one_optimizer_compose():
    optimizer = SGD(make_params(), lr=1.0)
    halving, decay = lr_scheduler.StepLR(optimizer, 2, 0.5), lr_scheduler.ExponentialLR(optimizer, 0.9)
    values = []
    for _ in range(5):
        halving.step()
        decay.step()
        values.append(optimizer.param_groups[0]["lr"])
    np.testing.assert_allclose(values, [0.9, 0.405, 0.3645, 0.164025, 0.1476225], rtol=1e-12)


def test_a_schedule_resumed_with_last_epoch_keeps_the_loaded_rate():
    optimizer = SGD(make_params(), lr=0.1)
    scheduler = lr_scheduler.ExponentialLR(optimizer, 0.9)
    for _ in range(5):
        scheduler.step()
    resumed = SGD(make_params(), lr=0.1)
    with pytest.raises(KeyError, match="load the optimizer's state_dict first"):
        lr_scheduler.ExponentialLR(resumed, 0.9, last_epoch=5)
    resumed.load_state_dict(optimizer.state_dict())
    scheduler = lr_scheduler.ExponentialLR(resumed, 0.9, last_epoch=5)
    assert scheduler.get_last_lr() == [pytest.approx(0.059049, rel=1e-12)]
    scheduler.step()
    assert resumed.param_groups[0]["lr"] == pytest.approx(0.05314410, rel=1e-12)
