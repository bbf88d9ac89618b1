"""Softmax and its log, dropout, and one-hot codes."""
import numpy as np

from .. import random
from ..autograd import Tensor


def log_softmax(x, dim=-1):
    """log(softmax(x)) along `dim`, computed without forming the softmax, so it stays
    finite where the softmax underflows to 0."""
    shifted = x.data - x.data.max(axis=dim, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))

    def backward(g):
        return (g - np.exp(out) * g.sum(axis=dim, keepdims=True),)
    return Tensor._make(out, (x,), backward, "log_softmax")


def softmax(x, dim=-1):
    """exp(x) / sum(exp(x)) along `dim`, shifted by the maximum first so that no exp
    overflows."""
    shifted = np.exp(x.data - x.data.max(axis=dim, keepdims=True))
    out = shifted / shifted.sum(axis=dim, keepdims=True)

    def backward(g):
        return (out * (g - (g * out).sum(axis=dim, keepdims=True)),)
    return Tensor._make(out, (x,), backward, "softmax")


def dropout(x, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only)."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must lie in [0, 1], got {p}")
    if not training or p == 0:
        return x
    keep = random.generator().random(x.shape, dtype=np.float32) >= p
    mask = keep.astype(x.dtype) * np.asarray(1 / (1 - p) if p < 1 else 0, x.dtype)
    return Tensor._make(x.data * mask, (x,), lambda g: (g * mask,), "dropout")


def one_hot(labels, num_classes):
    """Float32 rows with a 1 at each label (float, so it concatenates with features)."""
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"one_hot: labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"one_hot: labels must lie in [0, {num_classes}), got "
                         f"[{labels.min()}, {labels.max()}]")
    return Tensor(np.eye(num_classes, dtype=np.float32)[labels])
