"""RMSprop with PyTorch's update rule, defaults and state names."""
import numpy as np

from .optimizer import Optimizer


class RMSprop(Optimizer):
    """Divide each gradient by a running root mean square of its past values::

        square_avg = alpha * square_avg + (1 - alpha) * grad**2
        avg = sqrt(square_avg - grad_avg**2) + eps   (centered; grad_avg is the running
              sqrt(square_avg) + eps                 mean of grad, same alpha)
        param -= lr * grad / avg                     (or via a momentum buffer)

    with `grad` including weight_decay * param, as `torch.optim.RMSprop`."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        if lr < 0 or eps < 0 or weight_decay < 0 or momentum < 0 or alpha < 0:
            raise ValueError(f"RMSprop: need lr, alpha, eps, weight_decay and momentum >= 0, "
                             f"got lr={lr}, alpha={alpha}, eps={eps}, "
                             f"weight_decay={weight_decay}, momentum={momentum}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    @property
    def state_names(self):
        names = ("square_avg",)
        if any(group["momentum"] > 0 for group in self.param_groups):
            names += ("momentum_buffer",)
        if any(group["centered"] for group in self.param_groups):
            names += ("grad_avg",)
        return names

    def update(self, group, values, grads, state, step):
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        if group["weight_decay"]:
            grads = grads + group["weight_decay"] * values
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * np.square(grads)
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg *= alpha
            grad_avg += (1 - alpha) * grads
            avg = np.sqrt(square_avg - np.square(grad_avg))
        else:
            avg = np.sqrt(square_avg)
        avg += eps
        if group["momentum"] > 0:
            buffer = state["momentum_buffer"]
            buffer *= group["momentum"]
            buffer += grads / avg
            values -= lr * buffer
        else:
            values -= lr * (grads / avg)
