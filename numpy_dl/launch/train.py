"""The `train` command: data-parallel training of an autoencoder, the same code on one
process and on N MPI ranks.

Each rank holds the whole dataset and trains on its share of every global batch; the
DistributedOptimizer averages the gradients, so every rank takes the same step. After
each epoch the held-out split is evaluated across the ranks, rank 0 writes the metrics
and pictures, and a checkpoint when one is due (every --checkpoint-every epochs,
--checkpoint-every-steps steps or --checkpoint-every-minutes minutes).

Same global batch, same run. The epoch's sample order comes from (seed, epoch) alone;
global batch k of an epoch is positions [kB, (k+1)B) of that order, and rank r of R takes
positions r, r + R, ... of it. All training randomness (denoising noise and the VAE's
reparameterisation noise) is drawn for the whole global batch from (seed, step) and each
rank takes its rows [r::R]. A run with -n 1 --batch-size 64 and one with -n 2
--batch-size 32 therefore see the same samples with the same noise at every step and
differ only in float rounding; with --deterministic (rank r then takes a contiguous run
of micro-batches, see numpy_dl/distributed/tree.py) not even in that.

Exact resume. A checkpoint records the step, the position in the epoch (in samples) and
each rank's partial sums of the epoch's losses, so a resumed run goes on with the very
next batch and, at the same rank count, is bitwise the run that was never interrupted;
metrics.jsonl keeps only the epochs the checkpoint completed, so no line is lost or
doubled.

Every step ends with one small all-reduce (`Control`) in which the ranks agree on what
only some of them may know: a stop signal (see signals.py), a non-finite loss, a timed
checkpoint falling due. A non-finite loss or gradient stops the run before the update is
applied; a signal stops it after a checkpoint of the step it reached.
"""
import dataclasses
import math
import os
import time
import warnings

import numpy as np

import numpy_dl as ndl
from .. import checkpoint as checkpoint_files
from .. import distributed, models, optim, runtime
from ..data import DistributedSampler
from ..distributed import checkpoint
from ..loss import VAELoss
from . import config as options
from . import images, inputs, rundir, signals
from .errors import NonFiniteError, RunError, Stopped, UsageError, together
from .evaluate import Totals, agreed_table, validate
from .modeling import Autoencoding, describe, model_arguments, resumed_arguments
from .progress import Progress
from .signals import StopRequests

PICTURE_ITEMS = 16     # validation images shown with their reconstructions each epoch
PRIOR_SAMPLES = 64     # samples from the prior drawn each epoch (VAEs)
TRAINING_COPIES = 5    # float32 copies of the parameters training keeps (models/sizes.py)


def run(layers, comm, console):
    """Train as the (source, {option: value}) layers say; returns the exit code."""
    with together(comm):
        config = options.resolve(*layers)
    # Deterministic mode pins BLAS threads (default 1), so that a micro-batch's products
    # are computed the same way at every rank count.
    threads = runtime.set_blas_threads(config.threads or (1 if config.deterministic else 0),
                                       comm.ranks_per_node)
    with together(comm):
        run_dir, saved = rundir.plan(config, comm)
    with together(comm):
        changes = {}
        if saved is not None:
            config, changes = resumed_config(saved, layers, comm)
        config = dataclasses.replace(config, dataset=inputs.with_absolute_path(config.dataset))
        training = Training(config, inputs.load(config.dataset), saved, run_dir, comm)
    distributed.broadcast_parameters(training.auto.model, comm)
    if training.start_epoch >= config.epochs:
        console.say(f"{run_dir.path} has trained {training.start_epoch} epochs already "
                    f"(--epochs {config.epochs}): nothing to do; raise --epochs to go on")
        return 0
    with together(comm):
        distributed.on_root(run_dir.lock, comm)  # before anything is printed or written
    console.say(training.header(threads))
    with together(comm):
        distributed.on_root(lambda: run_dir.prepare(training.config_toml(), saved, changes),
                            comm)
    try:
        training.fit(console)
    finally:
        run_dir.unlock()
    return 0


def resumed_config(saved, layers, comm):
    """(config, changes) of a run resumed from `saved`: the checkpoint's options with the
    layers' on top. A change of what the run computes (the model, the data, the optimiser
    settings, the global batch) is a UsageError listing each one, unless --allow-changes;
    `changes` maps each changed option to (old, new)."""
    source = f"checkpoint {saved.path}"
    before = options.resolve((source, options.from_checkpoint(saved)))
    config = options.resolve((source, options.from_checkpoint(saved)), *layers)
    changes = {name: (getattr(before, name), getattr(config, name))
               for name in options.OPTIONS if name not in options.PLACEMENT
               and getattr(before, name) != getattr(config, name)}
    saved_batch = saved_global_batch(saved, before)
    if saved_batch is not None and saved_batch != global_batch(config, comm.size):
        changes["global batch"] = (saved_batch, global_batch(config, comm.size))
    # A change of the model itself can never be allowed: Training refuses it, naming both.
    refused = [name for name in changes
               if name not in options.FREE_TO_CHANGE + options.ARCHITECTURE]
    if refused and not config.allow_changes:
        listed = "; ".join(f"{name} {changes[name][0]} -> {changes[name][1]}" for name in refused)
        hint = (f" (--global-batch-size {saved_batch} keeps it at any rank count)"
                if "global batch" in refused else "")
        raise UsageError(f"resuming {saved.path} would change what the run computes: {listed}"
                         f"{hint}; pass --allow-changes to resume with the changes anyway")
    return config, changes


def saved_global_batch(saved, options_then):
    """The global batch the checkpoint's run trained with (None if it does not say)."""
    stored = saved.config.get("global_batch") if isinstance(saved.config, dict) else None
    if stored is None and options.from_checkpoint(saved):
        return global_batch(options_then, saved.metadata["world_size"])
    return stored


def global_batch(config, ranks):
    return config.global_batch_size or config.batch_size * ranks


def local_batch(config, ranks):
    """Samples per rank per step: --batch-size, or --global-batch-size shared out."""
    if config.global_batch_size is None:
        return config.batch_size
    if config.global_batch_size % ranks:
        raise UsageError(f"--global-batch-size {config.global_batch_size} cannot be shared "
                         f"equally by {ranks} ranks; use a multiple of {ranks}")
    return config.global_batch_size // ranks


class Control:
    """What the ranks agree on at the end of every step, in one all-reduce (max) of three
    numbers: the stop signal one of them received (0: none), whether any rank's loss was
    non-finite, and whether a timed checkpoint fell due on any rank."""

    def __init__(self, comm, stops, loss_finite, checkpoint_due):
        values = np.array([stops.signal, not loss_finite, checkpoint_due], np.float64)
        comm.allreduce_(values, op="max")
        self.signal, self.nonfinite_loss, self.checkpoint_due = (int(v) for v in values)


class Training:
    """One training run: the data, the model and optimizer on this rank, and the loop.

    Building one is local work (no collectives), so that a rank failing half-way raises
    with the others inside the same `together` block; the parameters are broadcast after.
    """

    def __init__(self, config, data, saved, run_dir, comm):
        self.config, self.data, self.run_dir, self.comm = config, data, run_dir, comm
        self.train_indices, self.val_indices = inputs.split(len(data.images),
                                                            config.val_fraction, config.seed)
        self.batch_size = local_batch(config, comm.size)
        self.global_batch = self.batch_size * comm.size
        self._plan_shares(config, comm)
        self.steps_per_epoch = len(self.train_indices) // self.global_batch
        if self.steps_per_epoch == 0:
            raise UsageError(f"the global batch of {self.global_batch} ({comm.size} x "
                             f"{self.batch_size}) is larger than the "
                             f"{len(self.train_indices)} training samples of {data.spec}; "
                             f"lower --batch-size")
        class_name, arguments = model_arguments(config, data.image_shape, data.num_classes)
        if saved is not None:
            arguments = resumed_arguments(class_name, arguments, saved)
        ndl.manual_seed(config.seed)
        try:
            model = models.build(class_name, copies=TRAINING_COPIES, **arguments)
        except ValueError as error:
            raise UsageError(str(error)) from None
        self.auto = Autoencoding(model, data.image_shape)
        self.objective = VAELoss(config.recon_loss, config.beta, reduction="none")
        base = make_optimizer(config, model.parameters())
        self.start_epoch, self.start_sample, self.partial_totals = 0, 0, None
        comm.step = 0
        self.last_checkpoint = None
        if saved is not None:
            self._check_resumable(saved, class_name, model.config, base)
            model.load_state_dict(saved.model_state)
            base.load_state_dict(saved.optimizer_state)
            self.start_epoch, comm.step = saved.epoch, saved.step
            self._resume_position(saved)
            self.last_checkpoint = saved.path
        apply_hyperparameters(base, config)
        self.optimizer = distributed.DistributedOptimizer(
            base, comm=comm, deterministic=config.deterministic,
            micro_batches=config.micro_batches)
        self.scheduler = make_scheduler(config, base)
        for _ in range(self.start_epoch if self.scheduler else 0):
            self.scheduler.step()
        self.resumed_from = saved.path if saved is not None else None
        self.train_images = data.images[self.train_indices]
        self.train_labels = data.labels_at(self.train_indices) if self.auto.conditional else None
        self.sampler = DistributedSampler(self.train_images, num_replicas=comm.size,
                                          rank=comm.rank, shuffle=True, seed=config.seed,
                                          drop_last=True)

    def _plan_shares(self, config, comm):
        """Which positions of each global batch this rank trains on (`share`), and in how
        many forward/backward passes (`parts`, slices of the share). By default rank r
        takes positions r, r + R, ... in one pass. In deterministic mode it takes the
        contiguous run of micro-batches that tree.py assigns it, one pass each."""
        if not config.deterministic:
            self.share, self.parts = slice(comm.rank, None, comm.size), [slice(None)]
            return
        try:
            slices = distributed.micro_batch_slices(self.global_batch, config.micro_batches, comm)
        except ValueError as error:
            raise UsageError(f"--deterministic: {error}") from None
        size = slices[0].stop - slices[0].start
        self.share = slice(slices[0].start, slices[-1].stop)
        self.parts = [slice(i * size, (i + 1) * size) for i in range(len(slices))]
        self.first_part = slices[0].start // size  # this rank's first micro-batch

    @property
    def step(self):
        """Updates taken so far: the communicator's count, which the DistributedOptimizer
        advances and the stall watchdog and replica check report."""
        return self.comm.step

    def _check_resumable(self, saved, class_name, model_config, optimizer):
        if saved.optimizer_state is None:
            raise UsageError(f"checkpoint {saved.path} holds no optimizer state, so training "
                             f"cannot resume from it; start a new run")
        if (saved.model_name, saved.model_config) != (class_name, model_config):
            raise UsageError(f"checkpoint {saved.path} holds the model "
                             f"{describe(saved.model_name, saved.model_config or {})} but the "
                             f"options ask for {describe(class_name, model_config)}; resume "
                             f"with the checkpoint's model options, or train into a new --out")
        trained_with = (saved.metadata.get("optimizer") or {}).get("type")
        if trained_with != type(optimizer).__name__:
            raise UsageError(f"checkpoint {saved.path} was trained with {trained_with}, not "
                             f"{type(optimizer).__name__}; resume with --optimizer "
                             f"{str(trained_with).lower()}")

    def _resume_position(self, saved):
        """Where in its epoch the checkpoint stopped: the sample offset into the epoch's
        order and each rank's partial loss sums (a checkpoint taken at an epoch's end,
        or written before step checkpoints existed, starts the next epoch afresh)."""
        position = saved.data_position or {}
        sample, totals = position.get("sample", 0), position.get("totals")
        if not (isinstance(sample, int) and 0 <= sample <= len(self.train_indices)):
            raise UsageError(f"checkpoint {saved.path} records sample {sample!r} of an epoch "
                             f"of {len(self.train_indices)} training samples")
        names = set(Totals(self.auto.variational).sums)
        if sample and not (isinstance(totals, list) and totals and all(
                isinstance(state, dict) and isinstance(state.get("count"), int)
                and isinstance(state.get("sums"), dict) and set(state["sums"]) == names
                and all(isinstance(v, (int, float)) for v in state["sums"].values())
                for state in totals)):
            raise UsageError(f"checkpoint {saved.path} stopped inside an epoch but does not "
                             f"hold its partial loss sums")
        self.start_sample, self.partial_totals = sample, totals if sample else None
        self.saved_totals_agreed = bool(position.get("totals_agreed"))
        if saved.metadata["world_size"] != self.comm.size and not self.config.deterministic:
            warnings.warn(f"{saved.path} was written by {saved.metadata['world_size']} ranks "
                          f"and resumes on {self.comm.size}: the run goes on from the same "
                          f"state, but its sums split differently, so its bits will differ "
                          f"from a run that was never interrupted (--deterministic keeps "
                          f"them equal)", stacklevel=2)

    # ------------------------------------------------------------------ reporting
    def header(self, threads):
        comm = self.comm
        parameters = sum(p.data.size for p in self.auto.model.parameters())
        shape = "x".join(map(str, self.data.image_shape))
        position = (f" ({self.start_sample} samples into epoch {self.start_epoch + 1})"
                    if self.start_sample else "")
        lines = [
            f"numpy_dl {ndl.__version__} train: {comm.size} rank{'s' * (comm.size > 1)} "
            f"({comm.ranks_per_node} per node), {threads} BLAS thread{'s' * (threads > 1)} per "
            f"rank, global batch {self.global_batch} ({comm.size} x {self.batch_size})",
            f"run directory: {self.run_dir.path}",
            *([f"resuming from {self.resumed_from} after epoch {self.start_epoch}, step "
               f"{self.step}{position}"] if self.resumed_from else []),
            f"data: {self.data.spec}, {len(self.data.images)} images of {shape}, "
            f"{len(self.train_indices)} for training ({self.steps_per_epoch} "
            f"step{'s' * (self.steps_per_epoch > 1)} per epoch), "
            f"{len(self.val_indices)} for validation",
            f"model: {type(self.auto.model).__name__}, {parameters:,} parameters",
            "config:",
        ]
        return "\n".join(lines) + "\n" + self.config_toml()

    def config_toml(self):
        return options.to_toml(self.config, header=[
            f"numpy_dl {ndl.__version__} train of {self.run_dir.path}: world size "
            f"{self.comm.size}, global batch {self.global_batch}",
            "train again: python -m numpy_dl.launch train --config THIS_FILE"])

    # ------------------------------------------------------------------ the loop
    def fit(self, console):
        progress = Progress(self.comm.is_main, self.config.epochs, self.steps_per_epoch,
                            self.global_batch)
        started = time.perf_counter()
        if not self.starts_from_own_latest():
            # The run's starting point, in its own directory: a new run killed before its
            # first checkpoint resumes from here (a directory with metrics but no
            # checkpoint is never a run's), and so does a branch into a new --out or a run
            # sent back to an older checkpoint, whose `latest` would otherwise name a
            # checkpoint of the abandoned history until the first scheduled save.
            totals = None
            if self.start_sample:
                totals = Totals.resumed(self.partial_totals, self.saved_totals_agreed,
                                        self.auto.variational, self.comm,
                                        self.config.deterministic)
            self.save(self.start_epoch, sample=self.start_sample, totals=totals)
        self._next_timed_checkpoint = self._timer()
        with StopRequests(self.comm) as self.stops:
            for epoch in range(self.start_epoch + 1, self.config.epochs + 1):
                self.fit_epoch(epoch, progress)
        with together(self.comm):
            if self.comm.is_main:
                self.draw_loss_curve()
        console.say(f"done: epoch {self.config.epochs} reached in "
                    f"{time.perf_counter() - started:.1f} s; outputs in {self.run_dir.path}")

    def starts_from_own_latest(self):
        """True when the run resumes from the checkpoint its own directory's `latest`
        names (--resume auto). Collective."""
        if self.last_checkpoint is None:
            return False
        def own_latest():
            found = checkpoint_files.latest(self.run_dir.checkpoints)
            return found is not None and os.path.samefile(found, self.last_checkpoint)
        with together(self.comm):
            return distributed.on_root(own_latest, self.comm)

    def fit_epoch(self, epoch, progress):
        """Train (the rest of) `epoch`, evaluate, write its pictures and metrics line, and
        its checkpoint when one is due. The metrics line goes first: a run killed between
        the two resumes from an earlier checkpoint, which drops that line and trains the
        epoch again, so metrics.jsonl never loses one."""
        epoch_started = time.perf_counter()
        first = self.start_sample if epoch == self.start_epoch + 1 else 0
        progress.start_epoch(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        train = self.train_epoch(epoch, first, progress)
        train_seconds = time.perf_counter() - epoch_started
        val = self.validate()
        trained_samples = max(self.steps_per_epoch * self.global_batch - first, 0)
        record = {"epoch": epoch, "step": self.step, "lr": lr,
                  **{f"train_{k}": v for k, v in train.items()},
                  **{f"val_{k}": v for k, v in (val or {}).items()},
                  "samples_per_s": trained_samples / train_seconds}
        with together(self.comm):
            if self.comm.is_main:
                self.write_pictures(epoch)
        record["seconds"] = time.perf_counter() - epoch_started
        with together(self.comm):
            if self.comm.is_main:
                self.run_dir.append_metrics(record)
        if epoch % self.config.checkpoint_every == 0 or epoch == self.config.epochs:
            self.save(epoch, sample=0, totals=None)
        if self.scheduler is not None:
            self.scheduler.step()
        progress.end_epoch(summary(record, self.config.epochs))

    def batches(self, epoch, first):
        """This rank's sample indices (into the training split) for each global batch of
        `epoch` from sample `first` of its order on (see the module docstring)."""
        self.sampler.set_epoch(epoch)
        order = self.sampler.global_order()
        batch = self.global_batch
        for start in range(first, self.steps_per_epoch * batch - batch + 1, batch):
            yield order[start:start + batch][self.share]

    def train_epoch(self, epoch, first, progress):
        """The steps of `epoch` from sample `first` on; the means over all ranks' samples."""
        self.auto.model.train()
        agreed = self.config.deterministic
        totals = Totals(self.auto.variational, agreed)
        if first:
            totals = Totals.resumed(self.partial_totals, self.saved_totals_agreed,
                                    self.auto.variational, self.comm, agreed)
        for count, rows in enumerate(self.batches(epoch, first), start=1):
            pixel_noise, latent_noise = self.noise()
            sums, finite = [], True
            for number, part in enumerate(self.parts, start=1):
                loss, *terms = self.forward_backward(rows[part], pixel_noise, latent_noise, part)
                sums.append(totals.sums_of(*terms))
                finite = finite and math.isfinite(float(loss.data))
                if number < len(self.parts):
                    self.optimizer.step()  # deterministic mode: a micro-batch into the tree
            control = Control(self.comm, self.stops, finite,
                              self._next_timed_checkpoint <= time.monotonic())
            self.optimizer.synchronize()
            self.check_finite(control, epoch)
            self.optimizer.step()
            self.add_step_sums(totals, sums)
            progress.step(float(loss.data))
            every = self.config.replica_check_every
            if every and self.step % every == 0:
                self.check_replicas()
            every = self.config.checkpoint_every_steps
            sample = first + count * self.global_batch
            if control.signal or control.checkpoint_due or (every and self.step % every == 0):
                self.save(epoch - 1, sample=sample, totals=totals)
            if control.signal:
                raise self.stopped(control.signal, epoch, sample // self.global_batch)
        return totals.means(self.comm)

    def add_step_sums(self, totals, sums):
        """Add this step's loss sums: this rank's own, or in deterministic mode every
        micro-batch's of every rank, in micro-batch order (one small Allreduce)."""
        if not totals.agreed:
            for row in sums:
                totals.add_row(row)
            return
        shape = (self.config.micro_batches, len(sums[0]))
        where = slice(self.first_part, self.first_part + len(sums))
        for row in agreed_table(sums, where, shape, self.comm):
            totals.add_row(row)

    def forward_backward(self, rows, pixel_noise, latent_noise, part):
        """(loss, per-sample loss, reconstruction term, KL term) of samples `rows` with
        rows `part` of this rank's noise, gradients computed."""
        x = self.train_images[rows]
        labels = None if self.train_labels is None else self.train_labels[rows]
        pixel_noise = None if pixel_noise is None else pixel_noise[part]
        latent_noise = None if latent_noise is None else latent_noise[part]
        seen = x if pixel_noise is None else np.clip(x + pixel_noise, 0.0, 1.0)
        recon, mu, logvar = self.auto.forward(seen, labels, latent_noise)
        reconstruction, kl = self.objective.parts(recon, x, mu, logvar)
        per_sample = self.objective.negative_elbo(reconstruction, kl)
        loss = per_sample.mean()
        self.optimizer.zero_grad()
        loss.backward()
        return loss, per_sample, reconstruction, kl

    def check_finite(self, control, epoch):
        """NonFiniteError on every rank (they all know: the loss flag was agreed, and the
        averaged gradients are the same everywhere) before a bad update is applied."""
        if control.nonfinite_loss:
            what = "the training loss became non-finite"
        elif not all(finite_square(flat.grad) for flat in self.optimizer.flat_groups):
            what = "the averaged gradient became non-finite (or too large for float32)"
        else:
            return
        last = self.last_checkpoint or "none yet"
        error = NonFiniteError(f"{what} at step {self.step + 1} "
                               f"(epoch {epoch}); the update was not applied and nothing was "
                               f"saved after it; last good checkpoint: {last}; resume from it "
                               f"with a lower --lr")
        error.agreed = True
        raise error

    def stopped(self, number, epoch, done):
        error = Stopped(f"{signals.name(number)} received: stopped at step {self.step} (epoch "
                        f"{epoch}, batch {done} of {self.steps_per_epoch}) after writing "
                        f"{self.last_checkpoint}; continue with --resume auto")
        error.agreed = True
        return error

    def _timer(self):
        """When the next timed checkpoint falls due (monotonic seconds; inf: never)."""
        minutes = self.config.checkpoint_every_minutes
        return time.monotonic() + 60 * minutes if minutes else math.inf

    def check_replicas(self):
        """Every rank must hold the same parameters; one that drifted (a fault, a
        nondeterministic kernel) stops the run, naming the first differing parameter."""
        with together(self.comm):
            try:
                distributed.check_replicas(self.auto.model, self.comm)
            except distributed.ReplicaMismatchError as error:
                raise RunError(f"{error}; the run stopped at step {self.step}") from None

    def noise(self):
        """(pixel noise or None, latent noise or None) for this rank's rows of the current
        global batch: drawn for the whole global batch from (seed, step), this rank's
        share of rows kept (see the module docstring)."""
        c = self.config

        def draw(stream, shape):
            generator = np.random.default_rng([c.seed, self.step, stream])
            whole = generator.standard_normal((self.global_batch,) + shape, dtype=np.float32)
            return whole[self.share]

        pixels = draw(0, self.data.image_shape) * np.float32(c.noise_std) if c.noise_std else None
        latent = draw(1, (self.auto.latent_dim,)) if self.auto.variational else None
        return pixels, latent

    def validate(self):
        if len(self.val_indices) == 0:
            return None
        deterministic = self.config.deterministic
        size = self.global_batch // self.config.micro_batches if deterministic else self.batch_size
        return validate(self.auto, self.objective, self.data, self.val_indices, size, self.comm,
                        deterministic)

    # ------------------------------------------------------------------ outputs
    def write_pictures(self, epoch):
        """Inputs above their reconstructions (eval mode) and, for VAEs, samples from the
        prior with the same latents every epoch, so epochs can be compared."""
        shown = (self.val_indices if len(self.val_indices) else self.train_indices)[:PICTURE_ITEMS]
        self.auto.model.eval()
        with ndl.no_grad():
            x = self.data.images[shown]
            recon = self.auto.forward(x, self.data.labels_at(shown))[0].data
            images.save_png(images.pairs(x, recon), self.run_dir.image("reconstructions", epoch))
            if self.auto.variational:
                z = self.auto.model.prior(PRIOR_SAMPLES, np.random.default_rng(self.config.seed))
                samples = self.auto.decode(z, self.auto.label_cycle(PRIOR_SAMPLES)).data
                images.save_png(images.grid(samples, 8), self.run_dir.image("samples", epoch))

    def save(self, epochs_done, sample, totals):
        """A checkpoint after `epochs_done` whole epochs and `sample` samples of the next
        (with every rank's partial loss sums). Collective."""
        states = None
        if totals is not None:
            states = [totals.state()] if totals.agreed else self.comm.gather_object(totals.state())
        position = {"epoch": epochs_done, "batch": sample // self.global_batch,
                    "sample": sample, "totals": states,
                    "totals_agreed": totals is not None and totals.agreed}
        with together(self.comm):
            self.last_checkpoint = checkpoint.save(
                self.run_dir.checkpoints, self.auto.model, self.optimizer, epoch=epochs_done,
                step=self.step, comm=self.comm, keep=self.config.keep,
                config={"options": options.as_dict(self.config), "global_batch": self.global_batch,
                        "image_shape": list(self.data.image_shape)},
                data_position=position)
        self._next_timed_checkpoint = self._timer()

    def draw_loss_curve(self):
        records = self.run_dir.read_metrics()
        series = {"train loss": [r["train_loss"] for r in records]}
        if any("val_loss" in r for r in records):
            series["validation loss"] = [r.get("val_loss", math.nan) for r in records]
        images.save_png(images.loss_curve([r["epoch"] for r in records], series),
                        self.run_dir.loss_curve)


def finite_square(gradient):
    """True when the squared norm of a flat gradient is finite: one BLAS pass that fails
    on any inf or NaN, and on values so large that Adam's squares would overflow into
    its state (a gradient above 1e19 is divergence, whatever its exact value)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return math.isfinite(np.dot(gradient, gradient))


def summary(record, epochs):
    """One line per epoch: losses (with their parts), throughput, time."""
    def losses(prefix):
        parts = [f"recon {record[prefix + 'recon']:.4f}"]
        if prefix + "kl" in record:
            parts.append(f"kl {record[prefix + 'kl']:.4f}")
        return f"{record[prefix + 'loss']:.4f} ({', '.join(parts)})"

    line = f"epoch {record['epoch']}/{epochs}  train {losses('train_')}"
    if "val_loss" in record:
        line += f"  val {losses('val_')}"
    return line + f"  {record['samples_per_s']:,.0f} samples/s  {record['seconds']:.2f} s"


def make_optimizer(config, parameters):
    if config.optimizer == "sgd":
        return optim.SGD(parameters, lr=config.lr, momentum=config.momentum,
                         weight_decay=config.weight_decay)
    kind = optim.AdamW if config.optimizer == "adamw" else optim.Adam
    return kind(parameters, lr=config.lr, weight_decay=config.weight_decay)


def apply_hyperparameters(optimizer, config):
    """Set the options' lr and weight decay (and momentum) on every param group: a resumed
    optimizer state brings the old ones, and options given on resuming win."""
    for group in optimizer.param_groups:
        group.update(lr=config.lr, initial_lr=config.lr, weight_decay=config.weight_decay)
        if "momentum" in group:
            group["momentum"] = config.momentum


def make_scheduler(config, optimizer):
    """The --lr-schedule, stepped once per epoch; None for 'none'."""
    schedules = {
        "none": lambda: None,
        "step": lambda: optim.lr_scheduler.StepLR(optimizer, config.lr_step, config.lr_gamma),
        "exponential": lambda: optim.lr_scheduler.ExponentialLR(optimizer, config.lr_gamma),
        "cosine": lambda: optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs),
    }
    return schedules[config.lr_schedule]()
