"""SGD with PyTorch's momentum, dampening, Nesterov and weight-decay rules."""
from .optimizer import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent, as `torch.optim.SGD`: its momentum, dampening, Nesterov
    and weight-decay rules and defaults."""

    state_names = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got "
                             f"{lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def update(self, group, values, grads, state, step):
        direction = grads
        if group["weight_decay"]:
            direction = grads + group["weight_decay"] * values
        momentum = group["momentum"]
        if momentum:
            buffer = state["momentum_buffer"]
            if step == 1:
                buffer[...] = direction
            else:
                buffer *= momentum
                buffer += (1 - group["dampening"]) * direction
            direction = direction + momentum * buffer if group["nesterov"] else buffer
        values -= group["lr"] * direction
