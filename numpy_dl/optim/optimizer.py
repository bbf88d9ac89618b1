"""Optimizer base: param groups, flat state, the step loop and state_dict.

A subclass names its per-parameter state arrays (`state_names`) and writes one
`update(group, values, grads, state, step)` over 1-D arrays. The base calls it once per
contiguous run of parameters that share a step count, which is the whole model in one
call unless some parameters skipped steps (no gradient).
"""
import numpy as np

from .flat import FlatGroup


class Optimizer:
    """The base of the optimizers, as `torch.optim.Optimizer`: `params` is an iterable of
    Parameters or of param-group dicts (`{"params": ..., "lr": 0.01}`), whose options
    default to `defaults`. A subclass names its per-parameter state (`state_names`) and
    defines `update`."""

    state_names = ()

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups, self._flat, self._state = [], [], []
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        """Add a group: a dict of "params" and any options, the others the optimizer's
        defaults, as PyTorch. A parameter belongs to one group, once."""
        params = list(group["params"])
        known = {id(p) for g in self.param_groups for p in g["params"]}
        for param in params:
            if not hasattr(param, "grad_slot"):
                raise TypeError(f"{type(self).__name__} optimizes Parameters, got {type(param).__name__}")
            if id(param) in known:
                raise ValueError(f"{type(self).__name__}: a parameter of shape {param.shape} "
                                 f"appears more than one time (twice in a group, or in two "
                                 f"groups); each parameter belongs to one group, once")
            known.add(id(param))
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown options {sorted(unknown)}; "
                             f"expected some of {sorted(self.defaults)}")
        self.param_groups.append({**self.defaults, **group, "params": params})
        self._flat.append(FlatGroup(params))
        self._state.append({"step": np.zeros(len(params), dtype=np.int64)})

    def _group_state(self, index):
        """Group `index`'s state, with any array the current options need allocated
        (options such as Adam's amsgrad may be switched on after construction)."""
        state = self._state[index]
        for name in self.state_names:
            if name not in state:
                state[name] = np.zeros_like(self._flat[index].data)
        return state

    @property
    def flat_groups(self):
        """The FlatGroup of each param group (DistributedOptimizer reduces their `grad`)."""
        return self._flat

    def zero_grad(self, set_to_none=True):
        """Clear every parameter's gradient: to None, as PyTorch by default, or to zeros."""
        for group in self.param_groups:
            for param in group["params"]:
                param.zero_grad(set_to_none)

    def step(self):
        """Update every parameter that has a gradient; one without (unused this step) keeps
        its values and its step count."""
        for index, (group, flat) in enumerate(zip(self.param_groups, self._flat)):
            state = self._group_state(index)
            present = flat.gather()
            state["step"][present] += 1
            for run, step in flat.runs(present, state["step"]):
                run_state = {name: state[name][run] for name in self.state_names}
                self.update(group, flat.data[run], flat.grad[run], run_state, int(step))

    def update(self, group, values, grads, state, step):
        """What a subclass defines: update `values` in place from `grads` (1-D runs of the
        flat buffers) with `state`, its arrays over the same run, at step count `step`."""
        raise NotImplementedError(f"{type(self).__name__} must define update()")

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """PyTorch's layout: per-parameter state keyed by the parameter's position across
        all groups (stable between runs, unlike id()), and the groups' hyper-parameters."""
        state, index = {}, 0
        groups = []
        for group_index, (group, flat) in enumerate(zip(self.param_groups, self._flat)):
            flat_state = self._group_state(group_index)
            indices = []
            for i, (param, where) in enumerate(zip(group["params"], flat.slices)):
                if flat_state["step"][i] > 0:
                    entry = {"step": int(flat_state["step"][i])}
                    entry.update((name, flat_state[name][where].reshape(param.shape).copy())
                                 for name in self.state_names)
                    state[index] = entry
                indices.append(index)
                index += 1
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": indices})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore what `state_dict()` returned, in place: each group's options and each
        parameter's state; ValueError when the groups or the shapes differ."""
        groups = state_dict["param_groups"]
        sizes = [len(g["params"]) for g in self.param_groups]
        if [len(g["params"]) for g in groups] != sizes:
            raise ValueError(f"{type(self).__name__}.load_state_dict: the saved state has groups "
                             f"of {[len(g['params']) for g in groups]} parameters, this optimizer "
                             f"{sizes}")
        saved = {int(k): v for k, v in state_dict["state"].items()}
        for group_index, (group, saved_group, flat) in enumerate(zip(self.param_groups, groups,
                                                                     self._flat)):
            group.update({k: v for k, v in saved_group.items() if k != "params"})
            flat_state = self._group_state(group_index)
            for i, (index, param, where) in enumerate(zip(saved_group["params"], group["params"],
                                                          flat.slices)):
                entry = saved.get(int(index), {"step": 0})
                flat_state["step"][i] = int(entry["step"])
                for name in self.state_names:
                    value = np.asarray(entry.get(name, 0), dtype=flat.data.dtype)
                    if value.ndim and value.shape != param.shape:
                        raise ValueError(f"{type(self).__name__}.load_state_dict: state {name!r} "
                                         f"of parameter {index} has shape {value.shape}, "
                                         f"expected {param.shape}")
                    flat_state[name][where] = value.reshape(-1) if value.ndim else value

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines + [")"])
