"""Losses against plain NumPy references (PyTorch's definitions), their reductions, their
gradients (float64 finite differences) and their errors."""
import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl import functional as F
from numpy_dl.autograd import Tensor
from numpy_dl.loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, KLDivergenceLoss,
                           MSELoss, VAELoss)

from conftest import gradcheck

RNG = np.random.default_rng(0)
PRED = RNG.uniform(0.05, 0.95, (4, 6))
TARGET = RNG.uniform(0, 1, (4, 6))
LOGITS = RNG.standard_normal((4, 6)) * 3
LABELS = np.array([0, 5, 2, 2])
MU = RNG.standard_normal((4, 3))
LOGVAR = RNG.standard_normal((4, 3)) * 0.5


# ---------------------------------------------------------------------- references
def ref_bce(p, t):
    return -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log(1 - p), -100))


def ref_bce_logits(x, t):
    return ref_bce(1 / (1 + np.exp(-x)), t)


def ref_cross_entropy(logits, labels):
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels]


def ref_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, 1)) summed over latent dims, per sample."""
    return -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=1)


def _reduce(values, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](values)


# ---------------------------------------------------------------------- values
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_elementwise_losses_match_references(reduction):
    cases = [
        (MSELoss, PRED, TARGET, (PRED - TARGET) ** 2),
        (BCELoss, PRED, TARGET, ref_bce(PRED, TARGET)),
        (BCEWithLogitsLoss, LOGITS, TARGET, ref_bce_logits(LOGITS, TARGET)),
    ]
    for cls, pred, target, elementwise in cases:
        out = cls(reduction=reduction)(ndl.tensor(pred), ndl.tensor(target))
        assert out.dtype == np.float32, cls
        expected = _reduce(elementwise, reduction)
        assert out.shape == np.shape(expected), cls
        np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-6, err_msg=cls.__name__)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_reference(reduction):
    out = CrossEntropyLoss(reduction=reduction)(ndl.tensor(LOGITS), LABELS)
    np.testing.assert_allclose(out.data, _reduce(ref_cross_entropy(LOGITS, LABELS), reduction),
                               rtol=1e-5)
    out = CrossEntropyLoss(reduction=reduction)(ndl.tensor(LOGITS), ndl.tensor(LABELS))
    np.testing.assert_allclose(out.data, _reduce(ref_cross_entropy(LOGITS, LABELS), reduction),
                               rtol=1e-5)


def test_cross_entropy_is_stable_for_large_logits():
    logits = np.array([[1000.0, 0.0], [0.0, -1000.0]], dtype=np.float32)
    out = CrossEntropyLoss(reduction="none")(ndl.tensor(logits), np.array([1, 1]))
    np.testing.assert_allclose(out.data, [1000.0, 1000.0], rtol=1e-6)


def test_bce_log_is_clamped_at_minus_100_like_pytorch():
    """p = 0 or 1 against the opposite target costs exactly 100, not inf; the gradient is
    large but finite (PyTorch: (p - t) / max(p (1 - p), 1e-12))."""
    p = ndl.tensor([0.0, 1.0, 0.0, 1.0, 0.5], requires_grad=True)
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0], dtype=np.float32)
    out = BCELoss(reduction="none")(p, t)
    np.testing.assert_allclose(out.data, [100.0, 100.0, 0.0, 0.0, np.log(2)], rtol=1e-6)
    BCELoss(reduction="sum")(p, t).backward()
    assert np.all(np.isfinite(p.grad))
    np.testing.assert_allclose(p.grad, [-1e12, 1e12, 0.0, 0.0, -2.0], rtol=1e-5)


def test_bce_with_logits_is_stable_for_large_logits():
    x = ndl.tensor([-200.0, 200.0, 0.0])
    out = BCEWithLogitsLoss(reduction="none")(x, np.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(out.data, [200.0, 200.0, np.log(2)], rtol=1e-6)


def test_kl_divergence_per_sample():
    for reduction in ("mean", "sum", "none"):
        out = KLDivergenceLoss(reduction=reduction)(ndl.tensor(MU), ndl.tensor(LOGVAR))
        np.testing.assert_allclose(out.data, _reduce(ref_kl(MU, LOGVAR), reduction), rtol=1e-5)
    zero = KLDivergenceLoss()(ndl.tensor(np.zeros((2, 3))), ndl.tensor(np.zeros((2, 3))))
    assert zero.item() == 0.0


@pytest.mark.parametrize("kind", ["mse", "bce"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("beta", [1.0, 0.25])
def test_vae_loss_is_the_negative_elbo_per_sample(kind, reduction, beta):
    """Reconstruction summed over each sample's features + beta * KL summed over latent
    dims; 'mean' averages over the batch only (not over features)."""
    recon = RNG.uniform(0.05, 0.95, (4, 2, 3, 3))
    x = RNG.uniform(0, 1, (4, 2, 3, 3))
    per_feature = (recon - x) ** 2 if kind == "mse" else ref_bce(recon, x)
    per_sample = per_feature.reshape(4, -1).sum(axis=1) + beta * ref_kl(MU, LOGVAR)
    criterion = VAELoss(reconstruction_loss=kind, beta=beta, reduction=reduction)
    out = criterion(ndl.tensor(recon), ndl.tensor(x), ndl.tensor(MU), ndl.tensor(LOGVAR))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, _reduce(per_sample, reduction), rtol=1e-5)
    reconstruction, kl = criterion.parts(ndl.tensor(recon), ndl.tensor(x), ndl.tensor(MU),
                                         ndl.tensor(LOGVAR))
    np.testing.assert_allclose(reconstruction.data, per_feature.reshape(4, -1).sum(axis=1),
                               rtol=1e-5)
    np.testing.assert_allclose(kl.data, ref_kl(MU, LOGVAR), rtol=1e-5)


def test_vae_loss_defaults_and_item():
    criterion = VAELoss()
    assert criterion.reconstruction_loss == "mse" and criterion.beta == 1.0
    assert criterion.reduction == "mean"
    value = criterion(ndl.tensor(PRED), ndl.tensor(TARGET), ndl.tensor(MU), ndl.tensor(LOGVAR)).item()
    assert type(value) is float
    expected = np.mean(((PRED - TARGET) ** 2).sum(axis=1) + ref_kl(MU, LOGVAR))
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_losses_accept_arrays():
    out = MSELoss()(PRED.astype(np.float32), TARGET)
    assert isinstance(out, Tensor)
    np.testing.assert_allclose(out.item(), np.mean((PRED - TARGET) ** 2), rtol=1e-5)


# ---------------------------------------------------------------------- gradients
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_gradcheck(reduction):
    gradcheck(lambda p, t: MSELoss(reduction)(p, t), PRED, TARGET)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_gradcheck(reduction):
    # the target too: PyTorch's BCE losses give it a gradient (another model's output)
    gradcheck(lambda p, t: BCELoss(reduction)(p, t), PRED, TARGET)
    gradcheck(lambda p, t: F.binary_cross_entropy(p, t), PRED, TARGET,
              requires_grad=[True, False])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_gradcheck(reduction):
    gradcheck(lambda x, t: BCEWithLogitsLoss(reduction)(x, t), LOGITS, TARGET)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradcheck(reduction):
    gradcheck(lambda x: CrossEntropyLoss(reduction)(x, LABELS), LOGITS)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_kl_gradcheck(reduction):
    gradcheck(lambda mu, logvar: KLDivergenceLoss(reduction)(mu, logvar), MU, LOGVAR)


@pytest.mark.parametrize("kind", ["mse", "bce"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_vae_loss_gradcheck(kind, reduction):
    criterion = VAELoss(kind, beta=0.5, reduction=reduction)
    recon = RNG.uniform(0.1, 0.9, (3, 1, 2, 2))
    x = RNG.uniform(0, 1, (3, 1, 2, 2))
    gradcheck(lambda r, x, mu, lv: criterion(r, x, mu, lv), recon, x, MU[:3], LOGVAR[:3],
              requires_grad=[True, False, True, True])


def test_loss_gradients_stay_float32(dtype_guard):
    p = ndl.tensor(PRED, requires_grad=True)
    mu, logvar = ndl.tensor(MU, requires_grad=True), ndl.tensor(LOGVAR, requires_grad=True)
    for loss in (VAELoss("bce")(p, TARGET, mu, logvar), VAELoss("mse")(p, TARGET, mu, logvar),
                 BCEWithLogitsLoss()(p, TARGET), CrossEntropyLoss()(p, LABELS)):
        assert loss.dtype == np.float32
        loss.backward()
    assert dtype_guard == []
    assert p.grad.dtype == mu.grad.dtype == np.float32


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("cls", [MSELoss, BCELoss, BCEWithLogitsLoss])
def test_mismatched_shapes_are_named(cls):
    with pytest.raises(ValueError) as info:
        cls()(ndl.tensor(np.full((4, 6), 0.5)), ndl.tensor(np.zeros((4, 5))))
    message = str(info.value)
    assert cls.__name__ in message and "(4, 6)" in message and "(4, 5)" in message


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="reduction"):
        MSELoss(reduction="average")
    with pytest.raises(ValueError, match="reconstruction_loss"):
        VAELoss(reconstruction_loss="l1")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        BCELoss()(ndl.tensor([1.5]), ndl.tensor([1.0]))
    with pytest.raises(ValueError, match=r"\(4, 6\).*\(3,\)"):
        CrossEntropyLoss()(ndl.tensor(LOGITS), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        CrossEntropyLoss()(ndl.tensor(LOGITS), np.array([0, 1, 2, 6]))
    with pytest.raises(TypeError, match="integers"):
        CrossEntropyLoss()(ndl.tensor(LOGITS), np.array([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 2\)"):
        KLDivergenceLoss()(ndl.tensor(MU), ndl.tensor(np.zeros((4, 2))))
    with pytest.raises(ValueError, match=r"VAELoss|MSELoss"):
        VAELoss()(ndl.tensor(PRED), ndl.tensor(PRED[:, :3]), ndl.tensor(MU), ndl.tensor(LOGVAR))
