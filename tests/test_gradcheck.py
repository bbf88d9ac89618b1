"""Every differentiable op against central differences in float64, and the same ops in
float32: their outputs and every gradient they pass back stay float32."""
import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl import functional as F
from numpy_dl.autograd import Tensor

from conftest import gradcheck


class U:
    """An input drawn uniformly from [lo, hi); `signed` keeps |x| >= lo with a random sign,
    away from kinks (abs, relu) where finite differences mean nothing."""

    def __init__(self, *shape, lo=-1.0, hi=1.0, signed=False):
        self.shape, self.lo, self.hi, self.signed = shape, lo, hi, signed

    def draw(self, rng):
        x = rng.uniform(self.lo, self.hi, size=self.shape)
        if self.signed:
            x *= rng.choice([-1.0, 1.0], size=self.shape)
        return x


def _bn(training, affine=True):
    def fn(x, *params):
        c = x.shape[1]
        running_mean = np.linspace(-0.5, 0.5, c).astype(x.dtype)
        running_var = np.linspace(0.5, 2.0, c).astype(x.dtype)
        weight, bias = params if affine else (None, None)
        return F.batch_norm(x, running_mean, running_var, weight, bias, training=training)
    return fn


def _dropout(x):
    ndl.manual_seed(7)  # the same mask in every evaluation
    return F.dropout(x, p=0.4, training=True)


CASES = {
    # arithmetic, with broadcasting undone in backward
    "add": (lambda a, b: a + b, [U(3, 1), U(1, 4)]),
    "add_trailing": (lambda a, b: a + b, [U(2, 3, 4), U(4)]),
    "radd_scalar": (lambda a: 2.5 + a, [U(2, 3)]),
    "sub": (lambda a, b: a - b, [U(2, 3, 4), U(3, 1)]),
    "rsub_scalar": (lambda a: 1.5 - a, [U(2, 3)]),
    "mul": (lambda a, b: a * b, [U(2, 1, 4), U(3, 1)]),
    "mul_same": (lambda a: a * a, [U(3, 2)]),
    "div": (lambda a, b: a / b, [U(2, 3), U(3, lo=0.5, hi=2.0, signed=True)]),
    "rdiv_scalar": (lambda a: 2.0 / a, [U(2, 3, lo=0.5, hi=2.0, signed=True)]),
    "neg": (lambda a: -a, [U(2, 3)]),
    "pow_int": (lambda a: a ** 3, [U(2, 3)]),
    "pow_frac": (lambda a: a ** 2.5, [U(2, 3, lo=0.5, hi=2.0)]),
    "pow_tensor": (lambda a, b: a ** b, [U(2, 3, lo=0.5, hi=2.0), U(2, 3)]),
    "pow_tensor_broadcast": (lambda a, b: a ** b, [U(2, 3, lo=0.5, hi=2.0), U(3)]),
    "rpow_scalar": (lambda a: 2.0 ** a, [U(2, 3)]),
    # matmul
    "matmul_2d": (lambda a, b: a @ b, [U(3, 4), U(4, 5)]),
    "matmul_batched": (lambda a, b: a @ b, [U(2, 3, 4), U(2, 4, 5)]),
    "matmul_broadcast_batch": (lambda a, b: a @ b, [U(2, 1, 3, 4), U(3, 4, 2)]),
    "matmul_batched_2d": (lambda a, b: a @ b, [U(2, 3, 4), U(4, 2)]),
    "matmul_1d_2d": (lambda a, b: a @ b, [U(4), U(4, 5)]),
    "matmul_2d_1d": (lambda a, b: a @ b, [U(3, 4), U(4)]),
    "matmul_1d_1d": (lambda a, b: a @ b, [U(4), U(4)]),
    "matmul_1d_batched": (lambda a, b: a @ b, [U(4), U(2, 4, 3)]),
    "matmul_batched_1d": (lambda a, b: a @ b, [U(2, 3, 4), U(4)]),
    "rmatmul_array": (lambda a: np.arange(6.0).reshape(2, 3) @ a, [U(3, 2)]),
    # reductions
    "sum_all": (lambda a: a.sum(), [U(2, 3, 4)]),
    "sum_axis": (lambda a: a.sum(axis=1), [U(2, 3, 4)]),
    "sum_neg_axis_keepdims": (lambda a: a.sum(axis=-1, keepdims=True), [U(2, 3, 4)]),
    "sum_tuple": (lambda a: a.sum(axis=(0, 2)), [U(2, 3, 4)]),
    "sum_tuple_keepdims": (lambda a: a.sum(axis=(0, 2), keepdims=True), [U(2, 3, 4)]),
    "mean_all": (lambda a: a.mean(), [U(2, 3, 4)]),
    "mean_axis": (lambda a: a.mean(axis=2), [U(2, 3, 4)]),
    "mean_tuple_keepdims": (lambda a: a.mean(axis=(0, -1), keepdims=True), [U(2, 3, 4)]),
    "max_all": (lambda a: a.max(), [U(2, 3, 4)]),
    "max_axis": (lambda a: a.max(axis=1), [U(2, 3, 4)]),
    "max_axis_keepdims": (lambda a: a.max(axis=-1, keepdims=True), [U(2, 3, 4)]),
    "max_tuple": (lambda a: a.max(axis=(0, 2)), [U(2, 3, 4)]),
    # shapes
    "reshape_tuple": (lambda a: a.reshape((4, 6)), [U(2, 3, 4)]),
    "reshape_varargs": (lambda a: a.reshape(3, -1), [U(2, 3, 4)]),
    "view": (lambda a: a.view(-1), [U(2, 3)]),
    "transpose": (lambda a: a.transpose(0, 2), [U(2, 3, 4)]),
    "transpose_negative": (lambda a: a.transpose(-1, 1), [U(2, 3, 4)]),
    "permute": (lambda a: a.permute(2, 0, 1), [U(2, 3, 4)]),
    "permute_tuple": (lambda a: a.permute((1, 2, 0)), [U(2, 3, 4)]),
    "permute_negative": (lambda a: a.permute(-1, 0, -2), [U(2, 3, 4)]),
    "T": (lambda a: a.T, [U(2, 3, 4)]),
    "T_2d": (lambda a: a.T @ a, [U(3, 2)]),
    # indexing
    "getitem_slices": (lambda a: a[1:, ::2], [U(3, 4)]),
    "getitem_int_slice": (lambda a: a[0, 1:3], [U(3, 4)]),
    "getitem_ellipsis": (lambda a: a[..., -1], [U(2, 3, 4)]),
    "getitem_newaxis": (lambda a: a[:, None, 1], [U(3, 4)]),
    "getitem_overlapping_basic": (lambda a: a[1:] * a[:-1], [U(5)]),
    "getitem_fancy_repeats": (lambda a: a[[0, 2, 0, 0]], [U(3, 2)]),
    "getitem_fancy_array": (lambda a: a[np.array([1, 1, 2, -1])], [U(4, 2)]),
    "getitem_fancy_pairs": (lambda a: a[[0, 2, 0], [1, 1, 1]], [U(3, 2)]),
    "getitem_fancy_and_slice": (lambda a: a[[1, 1, 0], 1:], [U(3, 3)]),
    "getitem_tensor_index": (lambda a: a[ndl.tensor(np.array([2, 2, 0]))], [U(3, 2)]),
    "getitem_nested_tuple_repeats": (lambda a: a[(0, 0),], [U(3, 2)]),
    "getitem_boolean_mask": (lambda a: a[np.array([True, False, True])], [U(3, 2)]),
    "getitem_bool_mask": (lambda a: a[np.array([True, False, True])], [U(3, 2)]),
    "cat_dim0": (lambda a, b, c: ndl.cat([a, b, c], 0), [U(2, 3), U(1, 3), U(3, 3)]),
    "cat_dim1": (lambda a, b: ndl.cat([a, b], dim=1), [U(2, 3), U(2, 2)]),
    "cat_neg_dim": (lambda a, b: ndl.cat((a, b), dim=-1), [U(2, 2, 1), U(2, 2, 3)]),
    "cat_same_tensor": (lambda a: ndl.cat([a, a], 0), [U(2, 3)]),
    "stack_dim0": (lambda a, b: ndl.stack([a, b]), [U(2, 3), U(2, 3)]),
    "stack_dim1": (lambda a, b, c: ndl.stack([a, b, c], dim=1), [U(2, 3), U(2, 3), U(2, 3)]),
    "stack_neg_dim": (lambda a, b: ndl.stack([a, b], dim=-1), [U(2, 3), U(2, 3)]),
    # elementwise
    "exp": (lambda a: a.exp(), [U(2, 3)]),
    "exp_fn": (lambda a: ndl.exp(a), [U(2, 3)]),
    "log": (lambda a: a.log(), [U(2, 3, lo=0.5, hi=2.0)]),
    "sqrt": (lambda a: ndl.sqrt(a), [U(2, 3, lo=0.5, hi=2.0)]),
    "abs": (lambda a: ndl.abs(a), [U(2, 3, lo=0.2, signed=True)]),
    "abs_method": (lambda a: a.abs(), [U(2, 3, lo=0.2, signed=True)]),
    "clip_both": (lambda a: a.clip(-0.5, 0.5), [np.array([[-0.9, -0.3, 0.2], [0.45, 0.7, -0.6]])]),
    "clip_min": (lambda a: ndl.clip(a, min=0.1), [np.array([-0.9, -0.3, 0.2, 0.45])]),
    "clamp_max": (lambda a: a.clamp(max=0.1), [np.array([-0.9, -0.3, 0.2, 0.45])]),
    "tanh": (lambda a: a.tanh(), [U(2, 3, lo=-2, hi=2)]),
    "sigmoid": (lambda a: ndl.sigmoid(a), [U(2, 3, lo=-3, hi=3)]),
    "relu": (lambda a: a.relu(), [U(2, 3, lo=0.2, signed=True)]),
    "relu_functional": (lambda a: F.relu(a), [U(2, 3, lo=0.2, signed=True)]),
    "leaky_relu": (lambda a: F.leaky_relu(a, 0.2), [U(2, 3, lo=0.2, signed=True)]),
    "leaky_relu_default": (lambda a: F.leaky_relu(a), [U(2, 3, lo=0.2, signed=True)]),
    "softmax": (lambda a: F.softmax(a), [U(3, 4, lo=-2, hi=2)]),
    "softmax_dim0": (lambda a: F.softmax(a, dim=0), [U(3, 4, lo=-2, hi=2)]),
    "log_softmax": (lambda a: F.log_softmax(a), [U(3, 4, lo=-2, hi=2)]),
    "log_softmax_dim1_4d": (lambda a: F.log_softmax(a, dim=1), [U(2, 3, 2, 2, lo=-2, hi=2)]),
    "dropout": (_dropout, [U(4, 5)]),
    # layers
    "linear": (lambda x, w, b: F.linear(x, w, b), [U(4, 3), U(5, 3), U(5)]),
    "linear_no_bias": (lambda x, w: F.linear(x, w), [U(4, 3), U(2, 3)]),
    "linear_3d": (lambda x, w, b: F.linear(x, w, b), [U(2, 3, 4), U(5, 4), U(5)]),
    "linear_1d": (lambda x, w, b: F.linear(x, w, b), [U(4), U(3, 4), U(3)]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
               [U(2, 3, 5, 6), U(4, 3, 3, 2), U(4)]),
    "conv2d_no_bias": (lambda x, w: F.conv2d(x, w, stride=(1, 2), padding=(2, 0)),
                       [U(1, 2, 4, 5), U(3, 2, 2, 3)]),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                            output_padding=1),
                         [U(2, 3, 3, 4), U(3, 2, 3, 3), U(2)]),
    "conv_transpose2d_no_bias": (lambda x, w: F.conv_transpose2d(
        x, w, stride=(3, 2), padding=(0, 1), output_padding=(2, 0)),
        [U(1, 2, 2, 3), U(2, 3, 2, 3)]),
    "batch_norm_train_2d": (_bn(True), [U(5, 3, lo=-2, hi=2), U(3, lo=0.5, hi=1.5), U(3)]),
    "batch_norm_train_3d": (_bn(True), [U(3, 2, 4, lo=-2, hi=2), U(2, lo=0.5, hi=1.5), U(2)]),
    "batch_norm_train_4d": (_bn(True), [U(2, 3, 3, 2, lo=-2, hi=2), U(3, lo=0.5, hi=1.5), U(3)]),
    "batch_norm_train_no_affine": (_bn(True, affine=False), [U(4, 3, 2, 2)]),
    "batch_norm_eval_2d": (_bn(False), [U(5, 3, lo=-2, hi=2), U(3, lo=0.5, hi=1.5), U(3)]),
    "batch_norm_eval_4d": (_bn(False), [U(2, 3, 3, 2, lo=-2, hi=2), U(3, lo=0.5, hi=1.5), U(3)]),
    "batch_norm_eval_no_affine": (_bn(False, affine=False), [U(4, 3, 2, 2)]),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), [U(2, 3, 4, 6)]),
    "max_pool2d_overlap_pad": (lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
                               [U(1, 2, 5, 6)]),
    "max_pool2d_ceil": (lambda x: F.max_pool2d(x, (3, 2), (2, 1), ceil_mode=True),
                        [U(2, 1, 6, 4)]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 2), [U(2, 3, 4, 6)]),
    "avg_pool2d_overlap_pad": (lambda x: F.avg_pool2d(x, 3, stride=2, padding=1),
                               [U(1, 2, 5, 6)]),
    "avg_pool2d_ceil_exclude_pad": (lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True,
                                                           count_include_pad=False),
                                    [U(1, 2, 6, 5)]),
    "interpolate_scale2": (lambda x: F.interpolate(x, scale_factor=2), [U(2, 2, 3, 4)]),
    "interpolate_size": (lambda x: F.interpolate(x, size=(5, 3)), [U(1, 2, 3, 4)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (3, 4), w, b),
                   [U(2, 3, 4, lo=-2, hi=2), U(3, 4, lo=0.5, hi=1.5), U(3, 4)]),
    "layer_norm_no_affine": (lambda x: F.layer_norm(x, 5), [U(3, 5, lo=-2, hi=2)]),
    "embedding": (lambda w: F.embedding(np.array([[0, 2, 2], [3, 0, 1]]), w), [U(4, 3)]),
    "nll_loss": (lambda x: F.nll_loss(x, np.array([1, 0, 2, 1])), [U(4, 3)]),
    "nll_loss_weighted_spatial": (lambda x: F.nll_loss(
        x, np.array([[[0, 1], [2, -100]]]), weight=np.array([0.5, 2.0, 1.5])), [U(1, 3, 2, 2)]),
    "where": (lambda a, b: ndl.where(np.array([True, False, True]), a, b), [U(2, 3), U(3)]),
    "maximum": (lambda a, b: ndl.maximum(a, b), [U(2, 3), U(3)]),
    "minimum_method": (lambda a, b: a.minimum(b), [U(2, 3), U(2, 1)]),
    "flatten": (lambda a: a.flatten(1), [U(2, 3, 4)]),
    "unsqueeze_squeeze": (lambda a: ndl.unsqueeze(a, 1).squeeze(-1) * 2, [U(3, 1)]),
    "clone": (lambda a: a.clone() * a, [U(2, 3)]),
    # compositions that reuse a tensor on several paths
    "diamond": (lambda a, b: (a * b + a.exp() * b).sum(axis=0) / (1.5 + a.tanh()).mean(),
                [U(3, 2), U(3, 2)]),
}


def _inputs(specs, seed):
    rng = np.random.default_rng(seed)
    return [spec.draw(rng) if isinstance(spec, U) else np.array(spec, dtype=np.float64)
            for spec in specs]


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck_float64(name):
    fn, specs = CASES[name]
    gradcheck(fn, *_inputs(specs, seed=len(name)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_stays_float32(name, dtype_guard):
    fn, specs = CASES[name]
    tensors = [ndl.tensor(a.astype(np.float32), requires_grad=True) for a in _inputs(specs, 3)]
    out = fn(*tensors)
    assert out.dtype == np.float32
    (out * Tensor(np.ones(out.shape, dtype=np.float32))).sum().backward()
    assert dtype_guard == []
    for t in tensors:
        assert t.grad is not None and t.grad.dtype == np.float32 and t.grad.shape == t.shape


@pytest.mark.parametrize("name", ["linear", "conv2d", "conv_transpose2d", "batch_norm_train_4d",
                                  "softmax", "log_softmax", "matmul_batched", "pow_tensor"])
def test_float32_gradients_match_float64(name):
    """float32 kernels compute the same gradients as float64 ones, to float32 precision."""
    fn, specs = CASES[name]
    arrays = _inputs(specs, 5)
    grads = {}
    for dtype in (np.float32, np.float64):
        tensors = [ndl.tensor(a, requires_grad=True, dtype=dtype) for a in arrays]
        out = fn(*tensors)
        weights = np.random.default_rng(0).standard_normal(out.shape).astype(dtype)
        (out * Tensor(weights)).sum().backward()
        grads[dtype] = [t.grad for t in tensors]
    for g32, g64 in zip(grads[np.float32], grads[np.float64]):
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)


def test_partial_requires_grad():
    """Only the inputs that ask for a gradient get one; the others stay None."""
    gradcheck(lambda a, b: a * b + b, U(2, 3).draw(np.random.default_rng(0)),
              U(2, 3).draw(np.random.default_rng(1)), requires_grad=[False, True])
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1),
              *_inputs([U(1, 2, 4, 4), U(3, 2, 3, 3), U(3)], 0), requires_grad=[True, False, True])


def test_gradcheck_helper_catches_a_wrong_gradient():
    """The checker itself can fail: an op with a deliberately wrong backward is caught."""
    def wrong_square(a):
        return Tensor._make(a.data ** 2, (a,), lambda g: (g * a.data,), "square")  # 2 * a
    with pytest.raises(AssertionError):
        gradcheck(wrong_square, np.array([0.5, 1.0, -2.0]))
