"""Losses. The VAE ones are per sample, as the negative ELBO is defined:
a sum over each sample's features (and latent dimensions), then a batch reduction."""

from .. import functional as F
from ..autograd import ops
from ..autograd.tensor import input_tensor

REDUCTIONS = ("mean", "sum", "none")


def _per_sample(elementwise):
    """Sum an elementwise loss over every axis but the batch axis."""
    return elementwise.sum(axis=tuple(range(1, elementwise.ndim))) if elementwise.ndim > 1 else elementwise


class Loss:
    """Base: checks `reduction` and applies it."""

    def __init__(self, reduction="mean"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, "
                             f"got {reduction!r}")
        self.reduction = reduction

    def reduce(self, loss):
        """`loss` (one value per element or sample) reduced as `reduction` says: its mean,
        its sum, or itself ('none')."""
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def _check_shapes(self, pred, target):
        if pred.shape != target.shape:
            raise ValueError(f"{type(self).__name__}: input shape {pred.shape} and target shape "
                             f"{target.shape} differ")

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MSELoss(Loss):
    """Squared error of `pred` against a `target` of the same shape, as `torch.nn.MSELoss`."""

    def __call__(self, pred, target):
        pred, target = input_tensor(pred), input_tensor(target)
        self._check_shapes(pred, target)
        diff = pred - target
        return self.reduce(diff * diff)


class BCELoss(Loss):
    """Binary cross-entropy of probabilities in [0, 1]; log clamped at -100 like PyTorch."""

    def __call__(self, pred, target):
        pred, target = input_tensor(pred), input_tensor(target)
        self._check_shapes(pred, target)
        return self.reduce(F.binary_cross_entropy(pred, target, reduction="none"))


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy of logits: that of sigmoid(logits), computed stably in one
    step, as `torch.nn.BCEWithLogitsLoss`."""

    def __call__(self, logits, target):
        logits, target = input_tensor(logits), input_tensor(target)
        self._check_shapes(logits, target)
        return self.reduce(F.binary_cross_entropy_with_logits(logits, target, reduction="none"))


class CrossEntropyLoss(Loss):
    """Cross-entropy of (N, C) logits against integer class labels (array or Tensor)."""

    def __call__(self, logits, labels):
        return self.reduce(F.cross_entropy(input_tensor(logits), labels, reduction="none"))


class NLLLoss(Loss):
    """Negative log-likelihood of log-probabilities (N, C, ...) against integer classes
    (N, ...), with PyTorch's optional class `weight` and `ignore_index`; "mean" is the
    weighted mean over the counted targets (see functional.nll_loss)."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, ignore_index

    def __call__(self, log_probs, labels):
        return F.nll_loss(input_tensor(log_probs), labels, self.weight, self.ignore_index,
                          self.reduction)


class KLDivergenceLoss(Loss):
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dimensions per sample."""

    def __call__(self, mu, logvar):
        mu, logvar = input_tensor(mu), input_tensor(logvar)
        if mu.shape != logvar.shape:
            raise ValueError(f"KLDivergenceLoss: mu {mu.shape} and logvar {logvar.shape} differ")
        elementwise = (mu * mu + ops.exp(logvar) - logvar - 1) * 0.5
        return self.reduce(_per_sample(elementwise))


class VAELoss(Loss):
    """Negative ELBO per sample: reconstruction summed over features + beta * KL."""

    def __init__(self, reconstruction_loss="mse", beta=1.0, reduction="mean"):
        super().__init__(reduction)
        kinds = {"mse": MSELoss, "bce": BCELoss}
        if reconstruction_loss not in kinds:
            raise ValueError(f"VAELoss: reconstruction_loss must be 'mse' or 'bce', got "
                             f"{reconstruction_loss!r}")
        self.reconstruction_loss, self.beta = reconstruction_loss, float(beta)
        self._elementwise = kinds[reconstruction_loss](reduction="none")
        self._kl = KLDivergenceLoss(reduction="none")

    def reconstruction(self, recon, x):
        """The reconstruction term per sample, summed over its features."""
        return _per_sample(self._elementwise(recon, x))

    def parts(self, recon, x, mu, logvar):
        """(reconstruction, kl) per sample, before beta and the reduction; kl is None when
        logvar is (a plain autoencoder, whose loss is the reconstruction term alone)."""
        kl = None if logvar is None else self._kl(mu, logvar)
        return self.reconstruction(recon, x), kl

    def negative_elbo(self, reconstruction, kl):
        """Per sample: reconstruction + beta * kl, or the reconstruction when kl is None."""
        return reconstruction if kl is None else reconstruction + kl * self.beta

    def __call__(self, recon, x, mu, logvar):
        return self.reduce(self.negative_elbo(*self.parts(recon, x, mu, logvar)))

    def __repr__(self):
        return (f"VAELoss(reconstruction_loss={self.reconstruction_loss!r}, beta={self.beta}, "
                f"reduction={self.reduction!r})")
