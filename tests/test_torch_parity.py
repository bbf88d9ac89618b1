"""numpy_dl against outputs and gradients PyTorch 2.13 computed for the same float64
inputs (tests/torch_reference/generate.py wrote them; PyTorch itself is not needed here).
"""
import os

import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl import functional as F
from numpy_dl import optim
from numpy_dl.nn import Parameter

REFERENCE = np.load(os.path.join(os.path.dirname(__file__), "torch_reference", "parity.npz"))

CASES = {
    "max_pool2d_k2": lambda x: F.max_pool2d(x, 2),
    "max_pool2d_k3_s2_p1": lambda x: F.max_pool2d(x, 3, 2, 1),
    "max_pool2d_overlap_rect": lambda x: F.max_pool2d(x, (2, 3), (1, 2), (1, 1)),
    "max_pool2d_ceil": lambda x: F.max_pool2d(x, 3, 2, 0, ceil_mode=True),
    "max_pool2d_ties": lambda x: F.max_pool2d(x, 3, 1, 1),
    "avg_pool2d_k2": lambda x: F.avg_pool2d(x, 2),
    "avg_pool2d_k3_s2_p1": lambda x: F.avg_pool2d(x, 3, 2, 1),
    "avg_pool2d_exclude_pad": lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
    "avg_pool2d_ceil_pad": lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
    "avg_pool2d_ceil_exclude": lambda x: F.avg_pool2d(x, (3, 2), (2, 2), (1, 0), ceil_mode=True,
                                                      count_include_pad=False),
    "avg_pool2d_divisor": lambda x: F.avg_pool2d(x, 2, 1, divisor_override=3),
    "interpolate_scale2": lambda x: F.interpolate(x, scale_factor=2),
    "interpolate_size_up": lambda x: F.interpolate(x, size=(5, 7)),
    "interpolate_size_down": lambda x: F.interpolate(x, size=(2, 3)),
    "interpolate_scale_frac": lambda x: F.interpolate(x, scale_factor=1.5),
    "interpolate_scale_pair": lambda x: F.interpolate(x, scale_factor=(2, 3)),
    "interpolate_scale_down": lambda x: F.interpolate(x, scale_factor=0.6),
    "layer_norm_last": lambda x, w, b: F.layer_norm(x, (5,), w, b),
    "layer_norm_two_dims": lambda x, w, b: F.layer_norm(x, (3, 4), w, b, eps=1e-3),
    "layer_norm_plain": lambda x: F.layer_norm(x, (6,)),
    "embedding": lambda w, i: F.embedding(i, w),
    "embedding_padding": lambda w, i: F.embedding(i, w, padding_idx=1),
    "nll_loss_mean": lambda x, t: F.nll_loss(x, t),
    "nll_loss_sum": lambda x, t: F.nll_loss(x, t, reduction="sum"),
    "nll_loss_none": lambda x, t: F.nll_loss(x, t, reduction="none"),
    "nll_loss_weight_ignore": lambda x, w, t: F.nll_loss(x, t, weight=w / 2, ignore_index=1),
    "nll_loss_spatial": lambda x, t: F.nll_loss(x, t),
    "softmax_dim0": lambda x: F.softmax(x, dim=0),
    "log_softmax_dim1": lambda x: F.log_softmax(x, dim=1),
    "where": lambda x, y: ndl.where(x.data > y.data, x, y * 2),
    "maximum_ties": lambda x, y: ndl.maximum(x, y),
    "minimum_broadcast": lambda x, y: ndl.minimum(x, y),
    "clamp_both": lambda x: ndl.clamp(x, -0.5, 0.5),
    "clamp_min": lambda x: x.clamp(min=0.2),
    "flatten_unsqueeze_squeeze": lambda x: x.flatten(1).unsqueeze(0).squeeze(0).unsqueeze(-1)
    .squeeze(),
    "view": lambda x: x.view(3, -1).T,
    "interpolate_scale_just_over_2": lambda x: F.interpolate(x, scale_factor=(1, 2.1)),
    "max_pool2d_minus_inf_beside_padding": lambda x: F.max_pool2d(x, 2, 1, 1),
    "max_pool2d_unbatched": lambda x: F.max_pool2d(x, (2,), ()),
    "avg_pool2d_unbatched": lambda x: F.avg_pool2d(x, 3, 2, 1),
    "nll_loss_all_ignored": lambda x, t: F.nll_loss(x, t),
    "sum_dim_keepdim": lambda x: x.sum(dim=1, keepdim=True),
    "mean_dims": lambda x: x.mean(dim=(0, 2)),
    "max_dim_values": lambda x: ndl.max(x, dim=1).values,
    "max_dim_keepdim_values": lambda x: x.max(dim=0, keepdim=True).values,
    "cross_entropy_default_mean": lambda x, t: F.cross_entropy(x, t),
    "binary_cross_entropy_default_mean": lambda p, t: F.binary_cross_entropy(p, t / 4),
    "bce_with_logits_sum": lambda x, t: F.binary_cross_entropy_with_logits(x, t / 4,
                                                                           reduction="sum"),
    "mse_loss_default_mean": lambda x, t: F.mse_loss(x, t / 3),
}


def _inputs(name):
    arrays, i = [], 0
    while f"{name}/in{i}" in REFERENCE:
        arrays.append(REFERENCE[f"{name}/in{i}"])
        i += 1
    return arrays


def test_every_reference_case_is_checked():
    recorded = {key.split("/")[0] for key in REFERENCE.files if "/in0" in key}
    assert recorded == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_pytorch(name):
    arrays = _inputs(name)
    inputs = [ndl.tensor(a, dtype=np.float64, requires_grad=True) if a.dtype.kind == "f" else a
              for a in arrays]
    with np.errstate(invalid="ignore", divide="ignore"):  # some cases hold -inf or NaN
        out = CASES[name](*inputs)
        (out * REFERENCE[f"{name}/upstream"]).sum().backward()
    np.testing.assert_allclose(out.data, REFERENCE[f"{name}/out"], rtol=1e-12, atol=1e-12)
    assert out.dtype == np.float64
    for i, t in enumerate(inputs):
        if isinstance(t, ndl.Tensor):
            np.testing.assert_allclose(t.grad, REFERENCE[f"{name}/grad{i}"], rtol=1e-12,
                                       atol=1e-12, err_msg=f"gradient of input {i}")


RMSPROP_CASES = {
    "rmsprop_default": {},
    "rmsprop_momentum": dict(lr=0.01, momentum=0.9),
    "rmsprop_centered": dict(lr=0.02, alpha=0.9, centered=True),
    "rmsprop_all": dict(lr=0.01, alpha=0.8, eps=1e-6, weight_decay=0.1, momentum=0.5,
                        centered=True),
}


@pytest.mark.parametrize("name", sorted(RMSPROP_CASES))
def test_rmsprop_follows_pytorchs_trajectory(name):
    param = Parameter(REFERENCE[f"{name}/start"].copy())
    target = REFERENCE[f"{name}/target"]
    optimizer = optim.RMSprop([param], **RMSPROP_CASES[name])
    for expected in REFERENCE[f"{name}/trajectory"]:
        optimizer.zero_grad()
        ((param - target) ** 2 * np.arange(1.0, 8.0)).sum().backward()
        optimizer.step()
        np.testing.assert_allclose(param.data, expected, rtol=1e-10, atol=1e-12)


CREATED = {
    "zeros": lambda: ndl.zeros(2), "ones": lambda: ndl.ones(2), "empty": lambda: ndl.empty(2),
    "full_int": lambda: ndl.full((2,), 3), "full_float": lambda: ndl.full((2,), 3.0),
    "full_bool": lambda: ndl.full((2,), True), "arange_int": lambda: ndl.arange(5),
    "arange_float": lambda: ndl.arange(0, 1, 0.25), "linspace": lambda: ndl.linspace(0, 1, 5),
    "eye": lambda: ndl.eye(3), "rand": lambda: ndl.rand(2), "randn": lambda: ndl.randn(2),
    "randint": lambda: ndl.randint(3, (2,)), "tensor_float": lambda: ndl.tensor([1.0]),
    "tensor_int": lambda: ndl.tensor([1]),
}


@pytest.mark.parametrize("name", sorted(CREATED))
def test_creation_dtypes_are_pytorchs(name):
    assert str(CREATED[name]().dtype) == str(REFERENCE[f"dtype/{name}"])
