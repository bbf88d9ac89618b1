"""Embedding lookup: rows of a weight table picked by integer indices."""
import numpy as np

from ..autograd import Tensor


def embedding(input, weight, padding_idx=None):
    """weight[input], as `torch.nn.functional.embedding`: indices of any shape, one row of
    `weight` each. The row of `padding_idx` gets no gradient. The weight gradient adds
    the output gradients of every position that picked a row (np.add.at, since an index
    may repeat), written straight into the flat gradient buffer when the weight has one."""
    indices = np.asarray(input.data if isinstance(input, Tensor) else input)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got {indices.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (rows, embedding_dim), got {weight.shape}")
    rows = weight.shape[0]
    if padding_idx is not None and not -rows <= padding_idx < rows:
        raise ValueError(f"embedding: padding_idx must lie in [{-rows}, {rows}), got "
                         f"{padding_idx}")
    if indices.size and (indices.min() < 0 or indices.max() >= rows):
        raise ValueError(f"embedding: indices must lie in [0, {rows}), got "
                         f"[{indices.min()}, {indices.max()}]")

    def backward(g):
        grad = weight.grad_destination()
        if grad is None:
            grad = np.zeros(weight.shape, g.dtype)
        else:
            grad[...] = 0
        np.add.at(grad, indices.reshape(-1), g.reshape(-1, weight.shape[1]))
        if padding_idx is not None:
            grad[padding_idx] = 0
        return (grad,)
    return Tensor._make(weight.data[indices], (weight,), backward, "embedding")
