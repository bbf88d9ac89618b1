"""Learning-rate schedules, stepped once per epoch, with PyTorch's names and update rules.

Each step() derives a group's next rate from its current `group["lr"]`, as PyTorch's
schedulers do, so a rate changed by hand carries on from there and two schedulers on
one optimizer compose. `initial_lr`, set in each group on construction, keeps the rate
the schedule started from (CosineAnnealingLR returns to it).
"""
import math


class LRScheduler:
    """The base of the schedulers, as `torch.optim.lr_scheduler.LRScheduler`: every
    `step()` sets each param group's "lr" from its current value by `next_lr`, which a
    subclass defines."""

    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            missing = [i for i, group in enumerate(optimizer.param_groups)
                       if "initial_lr" not in group]
            if missing:
                raise KeyError(f"{type(self).__name__}(last_epoch={last_epoch}) resumes a "
                               f"schedule, but param_groups {missing} have no 'initial_lr'; "
                               f"load the optimizer's state_dict first")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        # The constructor's own step starts the count; only StepLR may move the rate in it.
        self._is_initial = True
        self.step()
        self._is_initial = False

    def next_lr(self, lr, base_lr):
        """The rate after this step (`last_epoch` already counts it) from the current one."""
        raise NotImplementedError(f"{type(self).__name__} must define next_lr()")

    def step(self):
        """Advance the schedule by one epoch and set the rates it gives; call it after the
        epoch's optimizer steps, as in PyTorch."""
        self._step_count += 1
        self.last_epoch += 1
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.next_lr(group["lr"], base_lr)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The rates this scheduler set last."""
        return list(self._last_lr)

    def state_dict(self):
        """The schedule's position and settings (everything but the optimizer), for a
        checkpoint."""
        return {key: value for key, value in vars(self).items() if key != "optimizer"}

    def load_state_dict(self, state_dict):
        """The schedule's position; the rates themselves come back with the optimizer's
        own state_dict, as in PyTorch."""
        vars(self).update(state_dict)


class StepLR(LRScheduler):
    """Multiplies the rate by `gamma` every `step_size` steps, as
    `torch.optim.lr_scheduler.StepLR`."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size, self.gamma = int(step_size), gamma
        super().__init__(optimizer, last_epoch)

    def next_lr(self, lr, base_lr):
        if self.last_epoch == 0 or self.last_epoch % self.step_size:
            return lr
        return lr * self.gamma


class ExponentialLR(LRScheduler):
    """Multiplies the rate by `gamma` at every step, as
    `torch.optim.lr_scheduler.ExponentialLR`."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def next_lr(self, lr, base_lr):
        return lr if self._is_initial else lr * self.gamma


class CosineAnnealingLR(LRScheduler):
    """eta_min + (base_lr - eta_min)(1 + cos(pi * epoch / T_max)) / 2 when nothing else
    touches the rate, reached by PyTorch's recursive form, which scales the current rate."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def next_lr(self, lr, base_lr):
        epoch, period = self.last_epoch, self.T_max
        if self._is_initial:
            return lr
        if (epoch - 1 - period) % (2 * period) == 0:  # leaving the minimum, where cos = -1
            return lr + (base_lr - self.eta_min) * (1 - math.cos(math.pi / period)) / 2
        return ((1 + math.cos(math.pi * epoch / period))
                / (1 + math.cos(math.pi * (epoch - 1) / period))
                * (lr - self.eta_min) + self.eta_min)
