"""Write parity.npz: PyTorch's outputs and gradients for the cases test_torch_parity.py
checks numpy_dl against, so the tests compare with PyTorch without needing it.

Rerun after changing a case (PyTorch 2.13 CPU in a scratch venv, never a dependency):
    python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python tests/torch_reference/generate.py

Each case is a function of float64 inputs (and integer ones, which take no gradient).
The file holds, under "<case>/", the inputs `in0, in1, ...`, the output `out`, a random
upstream gradient `upstream` and the gradient of sum(out * upstream) with respect to
every float input, `grad0, grad1, ...`. Optimizer cases hold the parameter trajectory.
"""
import os

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(2026)


def normal(*shape):
    return rng.standard_normal(shape)


def ties(*shape):
    """Small integers as floats: windows with equal maxima."""
    return rng.integers(0, 3, shape).astype(np.float64)


CASES = {
    "max_pool2d_k2": (lambda x: F.max_pool2d(x, 2), [normal(2, 3, 6, 7)]),
    "max_pool2d_k3_s2_p1": (lambda x: F.max_pool2d(x, 3, 2, 1), [normal(2, 2, 7, 8)]),
    "max_pool2d_overlap_rect": (lambda x: F.max_pool2d(x, (2, 3), (1, 2), (1, 1)),
                                [normal(1, 2, 5, 7)]),
    "max_pool2d_ceil": (lambda x: F.max_pool2d(x, 3, 2, 0, ceil_mode=True), [normal(2, 1, 8, 6)]),
    "max_pool2d_ties": (lambda x: F.max_pool2d(x, 3, 1, 1), [ties(2, 2, 5, 5)]),
    "avg_pool2d_k2": (lambda x: F.avg_pool2d(x, 2), [normal(2, 3, 6, 7)]),
    "avg_pool2d_k3_s2_p1": (lambda x: F.avg_pool2d(x, 3, 2, 1), [normal(2, 2, 7, 8)]),
    "avg_pool2d_exclude_pad": (lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
                               [normal(2, 2, 7, 8)]),
    "avg_pool2d_ceil_pad": (lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
                            [normal(1, 2, 8, 6)]),
    "avg_pool2d_ceil_exclude": (lambda x: F.avg_pool2d(x, (3, 2), (2, 2), (1, 0), ceil_mode=True,
                                                       count_include_pad=False),
                                [normal(1, 2, 8, 5)]),
    "avg_pool2d_divisor": (lambda x: F.avg_pool2d(x, 2, 1, divisor_override=3),
                           [normal(1, 2, 4, 5)]),
    "interpolate_scale2": (lambda x: F.interpolate(x, scale_factor=2), [normal(2, 2, 3, 4)]),
    "interpolate_size_up": (lambda x: F.interpolate(x, size=(5, 7)), [normal(1, 2, 3, 4)]),
    "interpolate_size_down": (lambda x: F.interpolate(x, size=(2, 3)), [normal(1, 2, 5, 7)]),
    "interpolate_scale_frac": (lambda x: F.interpolate(x, scale_factor=1.5), [normal(1, 1, 5, 3)]),
    "interpolate_scale_pair": (lambda x: F.interpolate(x, scale_factor=(2, 3)),
                               [normal(1, 2, 2, 3)]),
    "interpolate_scale_down": (lambda x: F.interpolate(x, scale_factor=0.6), [normal(1, 1, 7, 9)]),
    "layer_norm_last": (lambda x, w, b: F.layer_norm(x, (5,), w, b),
                        [normal(4, 5), normal(5), normal(5)]),
    "layer_norm_two_dims": (lambda x, w, b: F.layer_norm(x, (3, 4), w, b, eps=1e-3),
                            [normal(2, 3, 4), normal(3, 4), normal(3, 4)]),
    "layer_norm_plain": (lambda x: F.layer_norm(x, (6,)), [normal(3, 2, 6)]),
    "embedding": (lambda w, i: F.embedding(i, w), [normal(6, 3), np.array([[1, 2, 1], [5, 1, 0]])]),
    "embedding_padding": (lambda w, i: F.embedding(i, w, padding_idx=1),
                          [normal(6, 3), np.array([[1, 2, 1], [5, 1, 0]])]),
    "nll_loss_mean": (lambda x, t: F.nll_loss(x, t), [normal(5, 4), np.array([0, 3, 1, 1, 2])]),
    "nll_loss_sum": (lambda x, t: F.nll_loss(x, t, reduction="sum"),
                     [normal(5, 4), np.array([0, 3, 1, 1, 2])]),
    "nll_loss_none": (lambda x, t: F.nll_loss(x, t, reduction="none"),
                      [normal(5, 4), np.array([0, 3, 1, 1, 2])]),
    # class weights 0.5, 2, 1, 3: integers halved, so they take no gradient
    "nll_loss_weight_ignore": (lambda x, w, t: F.nll_loss(x, t, weight=w / 2, ignore_index=1),
                               [normal(5, 4), np.array([1, 4, 2, 6]), np.array([0, 3, 1, 1, 2])]),
    "nll_loss_spatial": (lambda x, t: F.nll_loss(x, t), [normal(2, 3, 4, 5),
                                                         rng.integers(0, 3, (2, 4, 5))]),
    "softmax_dim0": (lambda x: F.softmax(x, dim=0), [normal(3, 4)]),
    "log_softmax_dim1": (lambda x: F.log_softmax(x, dim=1), [normal(2, 3, 4)]),
    "where": (lambda x, y: torch.where(x > y, x, y * 2), [normal(3, 4), normal(4)]),
    "maximum_ties": (lambda x, y: torch.maximum(x, y), [ties(4, 5), ties(4, 5)]),
    "minimum_broadcast": (lambda x, y: torch.minimum(x, y), [ties(4, 5), ties(5)]),
    "clamp_both": (lambda x: torch.clamp(x, -0.5, 0.5), [normal(4, 5)]),
    "clamp_min": (lambda x: x.clamp(min=0.2), [normal(4, 5)]),
    "flatten_unsqueeze_squeeze": (lambda x: x.flatten(1).unsqueeze(0).squeeze(0).unsqueeze(-1)
                                  .squeeze(), [normal(2, 1, 3, 1)]),
    "view": (lambda x: x.view(3, -1).T, [normal(2, 3, 2)]),
    # edge cases found in review
    "interpolate_scale_just_over_2": (lambda x: F.interpolate(x, scale_factor=(1, 2.1)),
                                      [normal(1, 2, 2, 4)]),
    "max_pool2d_minus_inf_beside_padding": (lambda x: F.max_pool2d(x, 2, 1, 1),
                                            [np.full((1, 1, 2, 3), -np.inf)]),
    "max_pool2d_unbatched": (lambda x: F.max_pool2d(x, (2,), ()), [normal(2, 4, 5)]),
    "avg_pool2d_unbatched": (lambda x: F.avg_pool2d(x, 3, 2, 1), [normal(3, 5, 4)]),
    "nll_loss_all_ignored": (lambda x, t: F.nll_loss(x, t), [normal(3, 4),
                                                             np.array([-100, -100, -100])]),
    # PyTorch's spellings found in a fresh-eyes port
    "sum_dim_keepdim": (lambda x: x.sum(dim=1, keepdim=True), [normal(2, 3, 4)]),
    "mean_dims": (lambda x: x.mean(dim=(0, 2)), [normal(2, 3, 4)]),
    "max_dim_values": (lambda x: torch.max(x, dim=1).values, [ties(3, 4)]),
    "max_dim_keepdim_values": (lambda x: x.max(dim=0, keepdim=True).values, [normal(3, 4)]),
    "cross_entropy_default_mean": (lambda x, t: F.cross_entropy(x, t),
                                   [normal(5, 4), np.array([0, 3, 1, 1, 2])]),
    "binary_cross_entropy_default_mean": (lambda p, t: F.binary_cross_entropy(p, t / 4),
                                          [rng.uniform(0.05, 0.95, (3, 4)),
                                           rng.integers(0, 5, (3, 4))]),
    "bce_with_logits_sum": (lambda x, t: F.binary_cross_entropy_with_logits(
        x, t / 4, reduction="sum"), [normal(3, 4), rng.integers(0, 5, (3, 4))]),
    "mse_loss_default_mean": (lambda x, t: F.mse_loss(x, t / 3), [normal(3, 4),
                                                                rng.integers(-3, 4, (3, 4))]),
}

OPTIMIZER_CASES = {
    "rmsprop_default": {},
    "rmsprop_momentum": dict(lr=0.01, momentum=0.9),
    "rmsprop_centered": dict(lr=0.02, alpha=0.9, centered=True),
    "rmsprop_all": dict(lr=0.01, alpha=0.8, eps=1e-6, weight_decay=0.1, momentum=0.5,
                        centered=True),
}


def functional_case(fn, inputs):
    tensors = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    out = fn(*tensors)
    upstream = rng.standard_normal(out.shape)
    (out * torch.tensor(upstream)).sum().backward()
    record = {f"in{i}": a for i, a in enumerate(inputs)}
    record.update(out=out.detach().numpy(), upstream=upstream)
    record.update({f"grad{i}": t.grad.numpy() for i, t in enumerate(tensors) if t.grad is not None})
    return record


def optimizer_case(options, steps=12):
    """Parameters of a quadratic bowl after each of `steps` RMSprop steps."""
    start, target = normal(7), normal(7)
    param = torch.tensor(start, requires_grad=True)
    optimizer = torch.optim.RMSprop([param], **options)
    trajectory = []
    for _ in range(steps):
        optimizer.zero_grad()
        ((param - torch.tensor(target)) ** 2 * torch.arange(1.0, 8.0, dtype=torch.float64)).sum().backward()
        optimizer.step()
        trajectory.append(param.detach().numpy().copy())
    return dict(start=start, target=target, trajectory=np.array(trajectory))


def creation_dtypes():
    """The dtype each creation function gives by default, by name."""
    made = dict(zeros=torch.zeros(2), ones=torch.ones(2), empty=torch.empty(2),
                full_int=torch.full((2,), 3), full_float=torch.full((2,), 3.0),
                full_bool=torch.full((2,), True), arange_int=torch.arange(5),
                arange_float=torch.arange(0, 1, 0.25), linspace=torch.linspace(0, 1, 5),
                eye=torch.eye(3), rand=torch.rand(2), randn=torch.randn(2),
                randint=torch.randint(3, (2,)), tensor_float=torch.tensor([1.0]),
                tensor_int=torch.tensor([1]))
    return {f"dtype/{name}": np.array(str(t.dtype).replace("torch.", "")) for name, t in made.items()}


def main():
    torch.set_default_dtype(torch.float64)
    arrays = {}
    for name, (fn, inputs) in CASES.items():
        arrays.update({f"{name}/{key}": value for key, value in functional_case(fn, inputs).items()})
    for name, options in OPTIMIZER_CASES.items():
        arrays.update({f"{name}/{key}": value for key, value in optimizer_case(options).items()})
    torch.set_default_dtype(torch.float32)
    arrays.update(creation_dtypes())
    arrays["torch_version"] = np.array(torch.__version__)
    np.savez_compressed(os.path.join(HERE, "parity.npz"), **arrays)
    print(f"wrote {len(arrays)} arrays from PyTorch {torch.__version__}")


if __name__ == "__main__":
    main()
