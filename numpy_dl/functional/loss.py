"""The elementwise and per-sample kernels behind the loss classes (numpy_dl.loss)."""
import numpy as np

from ..autograd import Tensor, ops
from .probability import log_softmax


def _target_array(target, like):
    data = target.data if isinstance(target, Tensor) else np.asarray(target)
    if data.shape != like.shape:
        raise ValueError(f"target shape {data.shape} does not match input shape {like.shape}")
    return data.astype(like.dtype, copy=False)


def _with_target(x, target):
    """The op's parents: the input, and the target too when it requires a gradient (a
    target that is another model's output, as PyTorch's losses allow)."""
    return (x, target) if isinstance(target, Tensor) and target.requires_grad else (x,)


REDUCTIONS = ("mean", "sum", "none")


def _reduced(losses, reduction, call):
    """The losses' mean or sum, or the losses themselves ("none"), as PyTorch's `reduction`."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"{call}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return losses if reduction == "none" else losses.mean() if reduction == "mean" \
        else losses.sum()


def mse_loss(input, target, reduction="mean"):
    """Squared error, elementwise before the reduction, as `torch.nn.functional.mse_loss`."""
    diff = input - _target_array(target, input)
    return _reduced(diff * diff, reduction, "mse_loss")


def binary_cross_entropy(p, target, reduction="mean"):
    """BCE of probabilities, elementwise before the reduction (PyTorch's default: the
    mean over every element); logs clamped at -100 as PyTorch does."""
    t = _target_array(target, p)
    if p.data.size and (p.data.min() < 0 or p.data.max() > 1):
        raise ValueError("binary_cross_entropy: input probabilities must lie in [0, 1]; "
                         "use BCEWithLogitsLoss for unbounded scores")
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p.data), -100)
        log_q = np.maximum(np.log1p(-p.data), -100)
    out = -(t * log_p + (1 - t) * log_q)
    parents = _with_target(p, target)

    def backward(g):
        denom = np.maximum(p.data * (1 - p.data), np.asarray(1e-12, p.dtype))
        grad_p = g * (p.data - t) / denom
        return (grad_p, g * (log_q - log_p)) if len(parents) == 2 else (grad_p,)
    return _reduced(Tensor._make(out, parents, backward, "binary_cross_entropy"), reduction,
                    "binary_cross_entropy")


def binary_cross_entropy_with_logits(x, target, reduction="mean"):
    """BCE of logits in the overflow-free form, elementwise before the reduction."""
    t = _target_array(target, x)
    out = np.maximum(x.data, 0) - x.data * t + np.log1p(np.exp(-np.abs(x.data)))
    parents = _with_target(x, target)

    def backward(g):
        grad_x = g * (ops.sigmoid(Tensor(x.data)).data - t)
        return (grad_x, -g * x.data) if len(parents) == 2 else (grad_x,)
    return _reduced(Tensor._make(out, parents, backward, "binary_cross_entropy_with_logits"),
                    reduction, "binary_cross_entropy_with_logits")


def cross_entropy(logits, labels, reduction="mean"):
    """Cross-entropy of (N, C) logits against integer labels (N,): per sample before the
    reduction (PyTorch's default: the mean over the samples)."""
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy: expected logits (N, C) and labels (N,), got "
                         f"{logits.shape} and {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"cross_entropy: labels must lie in [0, {logits.shape[1]})")
    rows = np.arange(len(labels))
    log_probs = log_softmax(Tensor(logits.data), dim=1).data
    out = -log_probs[rows, labels]

    def backward(g):
        grad = np.exp(log_probs)
        grad[rows, labels] -= 1
        return (grad * g[:, None],)
    return _reduced(Tensor._make(out, (logits,), backward, "cross_entropy"), reduction,
                    "cross_entropy")


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities `input` (N, C) or (N, C, d1, ...)
    against integer classes `target` (N,) or (N, d1, ...), as
    `torch.nn.functional.nll_loss`: each term is -weight[class] * input[class]; targets
    equal to ignore_index add nothing; "mean" divides by the sum of the weights of the
    counted targets (their number without `weight`)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"nll_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    classes = np.asarray(target.data if isinstance(target, Tensor) else target)
    if input.ndim < 2 or classes.shape != (input.shape[0],) + input.shape[2:]:
        raise ValueError(f"nll_loss: expected input (N, C, ...) and target (N, ...), got "
                         f"{input.shape} and {classes.shape}")
    if classes.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: target must hold integer classes, got {classes.dtype}")
    num_classes = input.shape[1]
    counted = classes != ignore_index
    if np.any((classes[counted] < 0) | (classes[counted] >= num_classes)):
        raise ValueError(f"nll_loss: target classes must lie in [0, {num_classes}) or equal "
                         f"ignore_index={ignore_index}")
    class_weight = np.ones(num_classes, input.dtype) if weight is None \
        else np.asarray(weight.data if isinstance(weight, Tensor) else weight, input.dtype)
    if class_weight.shape != (num_classes,):
        raise ValueError(f"nll_loss: weight must have one entry per class ({num_classes}), got "
                         f"shape {class_weight.shape}")
    safe = np.where(counted, classes, 0)
    term_weight = np.where(counted, class_weight[safe], 0).astype(input.dtype)
    picked = np.take_along_axis(input.data, safe[:, None], axis=1)[:, 0]

    def backward(g):
        grad = np.zeros(input.shape, g.dtype)
        with np.errstate(invalid="ignore"):  # all ignored: "mean" divides by 0, as PyTorch
            picked_grad = np.where(term_weight != 0, -term_weight * g, 0)
        np.put_along_axis(grad, safe[:, None], picked_grad[:, None], axis=1)
        return (grad,)
    losses = Tensor._make(-term_weight * picked, (input,), backward, "nll_loss")
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / term_weight.sum()

