"""Evaluation shared out over the ranks, each sample counted exactly once.

Training needs equal shards (every rank takes the same number of steps, so a sampler
pads or drops samples), but a metric over such shards would count some samples twice or
not at all, and depend on the number of ranks. Evaluation needs no lock-step, so each
rank takes one contiguous slice of np.array_split (sizes differ by at most one, none
repeated) and the ranks add up sums and counts, or send their rows to rank 0. Rows sent
to rank 0 (map_rows) are computed in batches cut from all of the indices, each rank
taking a contiguous run of whole batches: every sample is then computed in the same
batch at any rank count, and its row comes out the same.
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
    """function(chunk of indices) -> array rows, applied in eval mode to this rank's share
    of the chunks of `batch_size` cut from `indices`; every rank's rows concatenated in
    the order of `indices` on rank 0, None on the others. Collective."""
    pieces = list(chunks(np.asarray(indices), batch_size))
    autoencoding.model.eval()
    with no_grad():
        mine = [function(pieces[i]) for i in shard(range(len(pieces)), comm)]
    parts = comm.gather_object(np.concatenate(mine) if mine else None)
    return np.concatenate([p for p in parts if p is not None]) if comm.is_main else None


def sample_losses(autoencoding, objective, data, chunk):
    """(negative ELBO, reconstruction term, KL term or None) of each sample of `chunk`, as
    Tensors: the objective's parts of the model's output in its current mode (in eval
    mode a VAE decodes its posterior mean, so the numbers are deterministic)."""
    images = data.images[chunk]
    recon, mu, logvar = autoencoding.forward(images, data.labels_at(chunk))
    reconstruction, kl = objective.parts(recon, images, mu, logvar)
    return objective.negative_elbo(reconstruction, kl), reconstruction, kl


def squared_errors(autoencoding, data, indices, batch_size, comm):
    """The mean squared error per pixel of each sample's reconstruction, on rank 0."""
    def errors(chunk):
        images = data.images[chunk]
        recon = autoencoding.forward(images, data.labels_at(chunk))[0].data
        return np.mean((recon - images).reshape(len(chunk), -1) ** 2, axis=1, dtype=np.float64)
    return map_rows(errors, autoencoding, indices, batch_size, comm)


class Totals:
    """The per-sample loss parts added up over batches; `means` turns them into means over
    every rank's samples. By default each rank holds its own batches' sums and `means`
    adds them up in one small Allreduce; `agreed` totals (deterministic mode) hold every
    rank's sums already, added in one fixed order, so `means` needs no communication and
    comes out bitwise the same at any rank count."""

    def __init__(self, variational, agreed=False):
        self.names = ("loss", "recon", "kl") if variational else ("loss", "recon")
        self.sums = dict.fromkeys(self.names, 0.0)
        self.count = 0
        self.agreed = agreed

    def sums_of(self, loss, reconstruction, kl):
        """[sum of each part, count] of one batch's per-sample Tensors (kl None for plain
        autoencoders), as one row of floats."""
        parts = {"loss": loss, "recon": reconstruction, "kl": kl}
        return [float(parts[name].data.sum(dtype=np.float64)) for name in self.names] + \
            [len(loss.data)]

    def add(self, loss, reconstruction, kl):
        self.add_row(self.sums_of(loss, reconstruction, kl))

    def add_row(self, row):
        for name, value in zip(self.names, row):
            self.sums[name] += value
        self.count += int(row[-1])

    def state(self):
        """The sums so far, for a checkpoint taken in the middle of an epoch."""
        return {"sums": dict(self.sums), "count": self.count}

    @classmethod
    def resumed(cls, states, saved_agreed, variational, comm, agreed=False):
        """Totals going on from a checkpoint's `state()`s: one per rank, or one in all
        when `saved_agreed`. This rank's own at the rank count that saved them (so the
        epoch's means come out bitwise the same); agreed totals on every rank; otherwise
        rank 0 carries them all (the same means up to rounding)."""
        totals = cls(variational, agreed)
        if agreed:
            carried = states[:1] if saved_agreed else states
        elif len(states) == comm.size and not saved_agreed:
            carried = [states[comm.rank]]
        else:
            carried = states if comm.rank == 0 else []
        for state in carried:
            totals.add_row([state["sums"][name] for name in totals.names] + [state["count"]])
        return totals

    def means(self, comm):
        if self.agreed:
            return {name: total / self.count if self.count else float("nan")
                    for name, total in self.sums.items()}
        local = {name: (total / self.count if self.count else 0.0, self.count)
                 for name, total in self.sums.items()}
        return mean_over_ranks(local, comm)


def agreed_table(rows, where, shape, comm):
    """Collective: a float64 table of `shape` holding every rank's rows, on every rank;
    this rank's `rows` go at `where`, each other rank's at its own place. One Allreduce
    adds the ranks' tables, each zero outside its own rows: x + 0 is exactly x, so the
    table is exact whatever order MPI adds in."""
    table = np.zeros(shape)
    table[where] = np.asarray(rows, dtype=np.float64).reshape(-1, shape[1])
    return comm.allreduce_(table)


def validate(autoencoding, objective, data, indices, batch_size, comm, deterministic=False):
    """{loss, recon, kl} means over `indices`, in eval mode (z = mu for VAEs, so the
    number is deterministic), the same on every rank whatever the rank count; kl only
    for VAEs. Deterministic: chunks of `batch_size` cut from all of `indices` (the same
    shapes at any rank count), chunk c done by rank c mod size, the chunks' sums added in
    chunk order, so the means are bitwise the same at any rank count."""
    totals = Totals(autoencoding.variational, agreed=deterministic)
    mine = list(chunks(indices, batch_size)) if deterministic else list(
        chunks(shard(indices, comm), batch_size))
    if deterministic:
        mine = mine[comm.rank::comm.size]
    rows = []
    autoencoding.model.eval()
    with no_grad():
        for chunk in mine:
            rows.append(totals.sums_of(*sample_losses(autoencoding, objective, data, chunk)))
    if not deterministic:
        for row in rows:
            totals.add_row(row)
        return totals.means(comm)
    shape = (-(-len(indices) // batch_size), len(totals.names) + 1)
    for row in agreed_table(rows, slice(comm.rank, None, comm.size), shape, comm):
        totals.add_row(row)
    return totals.means(comm)
