"""Adam and AdamW with PyTorch's update rules and defaults.

The update is written over 1-D float32 arrays with in-place ufuncs and one scratch
buffer, so a whole model's step is about ten vectorised passes and no fresh memory.
"""
import math

import numpy as np

from .optimizer import Optimizer


class Adam(Optimizer):
    """Adam, as `torch.optim.Adam`: its update rule and defaults, `weight_decay` added to
    the gradient (AdamW decouples it) and `amsgrad`."""

    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"{type(self).__name__}: need lr >= 0, eps >= 0, weight_decay >= 0 "
                             f"and betas in [0, 1), got lr={lr}, eps={eps}, "
                             f"weight_decay={weight_decay}, betas={betas}")
        self._scratch = None
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))

    @property
    def state_names(self):
        amsgrad = any(group["amsgrad"] for group in self.param_groups)
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())

    def _scratch_for(self, size, dtype):
        if self._scratch is None or self._scratch.size < size or self._scratch.dtype != dtype:
            self._scratch = np.empty(size, dtype=dtype)
        return self._scratch[:size]

    def update(self, group, values, grads, state, step):
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        decay = group["weight_decay"]
        if decay and self.decoupled_weight_decay:
            values *= 1 - lr * decay
        elif decay:
            grads = grads + decay * values
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        scratch = self._scratch_for(values.size, values.dtype)

        exp_avg *= beta1
        np.multiply(grads, 1 - beta1, out=scratch)
        exp_avg += scratch
        exp_avg_sq *= beta2
        np.multiply(grads, math.sqrt(1 - beta2), out=scratch)
        np.square(scratch, out=scratch)
        exp_avg_sq += scratch

        second_moment = exp_avg_sq
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second_moment = state["max_exp_avg_sq"]
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
        np.sqrt(second_moment, out=scratch)
        scratch /= bias_correction2_sqrt
        scratch += eps
        np.divide(exp_avg, scratch, out=scratch)
        scratch *= -lr / bias_correction1
        values += scratch


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01, as PyTorch's)."""
    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
