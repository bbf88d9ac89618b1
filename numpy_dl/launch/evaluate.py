"""Evaluation shared out over the ranks, each sample counted exactly once.

Training needs equal shards (every rank takes the same number of steps, so a sampler
pads or drops samples), but a metric over such shards would count some samples twice or
not at all, and depend on the number of ranks. Evaluation needs no lock-step, so each
rank takes one contiguous slice of np.array_split (sizes differ by at most one, none
repeated) and the ranks add up sums and counts, or send their rows to rank 0.
"""
import numpy as np

from ..autograd import no_grad
from ..distributed import mean_over_ranks


def shard(indices, comm):
    """This rank's part of `indices`, without padding."""
    return np.array_split(np.asarray(indices), comm.size)[comm.rank]


def chunks(indices, size):
    for start in range(0, len(indices), size):
        yield indices[start:start + size]


def map_rows(function, autoencoding, indices, batch_size, comm):
    """function(chunk of indices) -> array rows, applied in eval mode over this rank's
    shard of `indices`; every rank's rows concatenated in the order of `indices` on rank 0,
    None on the others. Collective."""
    autoencoding.model.eval()
    with no_grad():
        mine = [function(chunk) for chunk in chunks(shard(indices, comm), batch_size)]
    parts = comm.gather_object(np.concatenate(mine) if mine else None)
    return np.concatenate([p for p in parts if p is not None]) if comm.is_main else None


def squared_errors(autoencoding, data, indices, batch_size, comm):
    """The mean squared error per pixel of each sample's reconstruction, on rank 0."""
    def errors(chunk):
        images = data.images[chunk]
        recon = autoencoding.forward(images, data.labels_at(chunk))[0].data
        return np.mean((recon - images).reshape(len(chunk), -1) ** 2, axis=1, dtype=np.float64)
    return map_rows(errors, autoencoding, indices, batch_size, comm)


class Totals:
    """The per-sample loss parts added up over this rank's batches; `means` turns them into
    means over every rank's samples (one small Allreduce)."""

    def __init__(self, variational):
        self.sums = dict.fromkeys(("loss", "recon", "kl") if variational else ("loss", "recon"),
                                  0.0)
        self.count = 0

    def add(self, loss, reconstruction, kl):
        """Per-sample Tensors of one batch (kl None for plain autoencoders)."""
        for name, part in (("loss", loss), ("recon", reconstruction), ("kl", kl)):
            if name in self.sums:
                self.sums[name] += float(part.data.sum(dtype=np.float64))
        self.count += len(loss.data)

    def state(self):
        """This rank's sums so far, for a checkpoint taken in the middle of an epoch."""
        return {"sums": dict(self.sums), "count": self.count}

    @classmethod
    def resumed(cls, states, variational, comm):
        """Totals going on from a checkpoint's per-rank `state()`s: this rank's own at the
        rank count that saved them (so the epoch's means come out bitwise the same);
        at another rank count rank 0 carries them all (the same means up to rounding)."""
        totals = cls(variational)
        if len(states) == comm.size:
            carried = [states[comm.rank]]
        else:
            carried = states if comm.rank == 0 else []
        for state in carried:
            for name in totals.sums:
                totals.sums[name] += state["sums"][name]
            totals.count += state["count"]
        return totals

    def means(self, comm):
        local = {name: (total / self.count if self.count else 0.0, self.count)
                 for name, total in self.sums.items()}
        return mean_over_ranks(local, comm)


def validate(autoencoding, objective, data, indices, batch_size, comm):
    """{loss, recon, kl} means over `indices`, in eval mode (z = mu for VAEs, so the
    number is deterministic), the same on every rank whatever the rank count; kl only
    for VAEs."""
    totals = Totals(autoencoding.variational)
    autoencoding.model.eval()
    with no_grad():
        for chunk in chunks(shard(indices, comm), batch_size):
            images = data.images[chunk]
            recon, mu, logvar = autoencoding.forward(images, data.labels_at(chunk))
            reconstruction, kl = objective.parts(recon, images, mu, logvar)
            totals.add(objective.negative_elbo(reconstruction, kl), reconstruction, kl)
    return totals.means(comm)
