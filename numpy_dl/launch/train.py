"""The `train` command: data-parallel training of an autoencoder, the same code on one
process and on N MPI ranks.

Each rank reads the samples of its share of every global batch from the dataset (a
.npy file stays memory-mapped, shared by the node's ranks) and trains on them; the
DistributedOptimizer averages the gradients, so every rank takes the same step. After
each epoch the held-out split is evaluated across the ranks, rank 0 writes the metrics
(and every --images-every epochs the pictures and loss.png), and a checkpoint when one
is due (every --checkpoint-every epochs, --checkpoint-every-steps steps or
--checkpoint-every-minutes minutes).

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

One step, one global batch. The global batch (--global-batch-size, 32 unless --batch-size
gives a size per rank instead) makes one update: each rank does its share of it in
--accumulate forward/backward passes of equal size (the DistributedOptimizer's
backward_passes_per_step), the gradients are averaged over every pass of every rank
(rounded to float16 on the way with --compression fp16; in buckets while backward runs
with --overlap), clipped to --clip-grad-norm,
and the optimizer steps at the scheduled learning rate times the warm-up factor. The step
count, checkpoints and their data_position count whole global batches, so a signal or a
step checkpoint always falls between two updates, never inside an accumulation.

Validation runs every --validate-every epochs and after the last. The lowest validation
loss so far, its epoch and the validations since that have not beaten it travel in every
checkpoint's data_position: --early-stopping goes on counting across a resume, and a run
that stopped early stays stopped. Each new lowest is written to checkpoints/best.npz, a
checkpoint outside the --keep rotation.
"""
import dataclasses
import math
import os
import time
import warnings
from contextlib import contextmanager

import numpy as np

import numpy_dl as ndl
from .. import checkpoint as checkpoint_files
from .. import distributed, models, optim, runtime
from ..data import DistributedSampler
from ..distributed import checkpoint
from ..loss import VAELoss
from ..nn.utils import clip_grad_norm_
from . import config as options
from . import images, inputs, loggers, plots, rundir, signals
from .errors import NonFiniteError, RunError, Stopped, UsageError, together
from .evaluate import Totals, agreed_table, validate
from .modeling import Autoencoding, describe, model_arguments, resumed_arguments
from .progress import Progress
from .signals import StopRequests

PICTURE_ITEMS = 16     # validation images shown with their reconstructions each epoch
PRIOR_SAMPLES = 64     # samples from the prior drawn each epoch (VAEs)
TRAINING_COPIES = 5    # float32 copies of the parameters training keeps (models/sizes.py)
BEST_CHECKPOINT = "best.npz"  # in RUN/checkpoints: the lowest validation loss so far


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run of `train` ends with: its run directory, the metrics.jsonl record of its
    last epoch ({} when it has none), its last checkpoint, and whether --early-stopping
    ended it."""
    run_dir: str
    metrics: dict
    checkpoint: str
    stopped_early: bool


def run(layers, comm, console):
    """Train as the (source, {option: value}) layers say; returns the exit code, 0 (a
    failure raises a LaunchError, which carries its own)."""
    execute(layers, comm, console)
    return 0


def execute(layers, comm, console):
    """Train as the (source, {option: value}) layers say; returns the TrainResult, on
    every rank."""
    with together(comm):
        config = options.resolve(*layers)
    # Deterministic mode never shares the cores (--threads 0): a micro-batch's products must
    # be computed with the same thread count at every rank count.
    threads = runtime.set_blas_threads(config.threads or (1 if config.deterministic else 0),
                                       comm.ranks_per_node)
    with together(comm):
        run_dir, saved = rundir.plan(config, comm)
    with together(comm):
        changes = {}
        if saved is not None:
            config, changes = resumed_config(saved, layers, comm)
        config = dataclasses.replace(config, dataset=inputs.with_absolute_path(config.dataset))
        console.quiet = config.quiet
        if config.tensorboard and comm.is_main:  # rank 0 writes the event files
            loggers.require_tensorboard()
        training = Training(config, inputs.load(config.dataset), saved, run_dir, comm)
    distributed.broadcast_parameters(training.auto.model, comm)
    finished = training.finished_already()
    if finished:
        console.say(f"{run_dir.path} {finished}")
        records = distributed.on_root(run_dir.read_metrics, comm)
        return TrainResult(run_dir.path, records[-1] if records else {},
                           training.last_checkpoint, training.stops_early())
    with together(comm):
        distributed.on_root(run_dir.lock, comm)  # before anything is printed or written
    with together(comm):  # once the lock is held: never into another run's logs
        console.log_to(run_dir.log(comm.rank))
    console.say(training.header(threads))
    with together(comm):
        distributed.on_root(lambda: run_dir.prepare(training.config_toml(), saved, changes),
                            comm)
        if config.tensorboard and comm.is_main:
            training.tensorboard = loggers.TensorBoard(run_dir.tensorboard,
                                                       training.start_epoch + 1)
    try:
        return training.fit(console)
    finally:
        if training.tensorboard is not None:
            training.tensorboard.close()
        run_dir.unlock()


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
    """Samples per step over all ranks."""
    return local_batch(config, ranks) * ranks * config.accumulate


def local_batch(config, ranks):
    """Samples per rank per forward/backward pass: --batch-size, or the global batch
    (--global-batch-size, else DEFAULT_GLOBAL_BATCH) shared out equally over the ranks and
    their --accumulate passes. Given both (an older run's config.toml), the global batch
    wins, as it always did."""
    if config.global_batch_size is None and config.batch_size is not None:
        return config.batch_size
    total = config.global_batch_size or options.DEFAULT_GLOBAL_BATCH
    shares = ranks * config.accumulate
    if total % shares:
        given = (f"--global-batch-size {total}" if config.global_batch_size
                 else f"the default global batch of {total}")
        passes = f" x {config.accumulate} passes (--accumulate)" if config.accumulate > 1 else ""
        raise UsageError(f"{given} cannot be shared equally by {ranks} ranks{passes}; give a "
                         f"--global-batch-size that is a multiple of {shares}, or a "
                         f"--batch-size (samples per rank per pass)")
    return total // shares


def check_combinations(config):
    """A UsageError for options that do not go together."""
    if config.deterministic and config.accumulate > 1:
        raise UsageError("--deterministic takes no --accumulate: its --micro-batches already "
                         "cut each global batch into passes of a fixed size (raise "
                         "--micro-batches for smaller ones)")
    if config.deterministic and config.compression != "none":
        raise UsageError(f"--deterministic takes no --compression {config.compression}: it "
                         f"adds the gradients in float32 in a fixed tree, so that the bits do "
                         f"not depend on the rank count")
    if config.deterministic and config.overlap == "on":
        raise UsageError("--deterministic takes no --overlap on: its fixed tree adds whole "
                         "messages after backward, so that the bits do not depend on the rank "
                         "count")
    if config.warmup_epochs and config.warmup_steps:
        raise UsageError("--warmup-epochs and --warmup-steps give the same warm-up in two "
                         "units; give one of them")
    if config.early_stopping and not config.val_fraction:
        raise UsageError("--early-stopping watches the validation loss, but --val-fraction 0 "
                         "holds out no validation data; give a --val-fraction above 0")


@dataclasses.dataclass
class Validations:
    """A run's validations so far, as --early-stopping and the best checkpoint need them:
    the lowest loss (None before the first finite one), the epoch that reached it, and
    how many validations since have not gone below it. Every checkpoint carries them
    (data_position), so that a resumed run goes on counting."""
    best_loss: float = None
    best_epoch: int = None
    stale: int = 0

    def add(self, loss, epoch):
        """Count a validation of `epoch`; True when its loss is the lowest so far."""
        if math.isfinite(loss) and (self.best_loss is None or loss < self.best_loss):
            self.best_loss, self.best_epoch, self.stale = loss, epoch, 0
            return True
        self.stale += 1
        return False

    @classmethod
    def restored(cls, state, source):
        """The record a checkpoint holds (a fresh one when it has none, as checkpoints of
        older versions); a UsageError when it is malformed."""
        if state is None:
            return cls()
        if not (isinstance(state, dict) and state.keys() == {"best_loss", "best_epoch", "stale"}
                and isinstance(state["stale"], int) and state["stale"] >= 0
                and (state["best_loss"] is None) == (state["best_epoch"] is None)
                and isinstance(state["best_loss"], (int, float, type(None)))
                and isinstance(state["best_epoch"], (int, type(None)))):
            raise UsageError(f"checkpoint {source} holds a malformed record of its "
                             f"validations: {str(state)[:100]}")
        return cls(**state)


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
        check_combinations(config)
        self.config, self.data, self.run_dir, self.comm = config, data, run_dir, comm
        self.train_indices, self.val_indices = inputs.split(len(data.images),
                                                            config.val_fraction, config.seed)
        self.batch_size = local_batch(config, comm.size)  # per rank and pass
        self.global_batch = global_batch(config, comm.size)
        self._plan_shares(config, comm)
        self.steps_per_epoch = len(self.train_indices) // self.global_batch
        if self.steps_per_epoch == 0:
            raise UsageError(f"the global batch of {self.global_batch} is larger than the "
                             f"{len(self.train_indices)} training samples of {data.spec}; "
                             f"lower --global-batch-size (or --batch-size)")
        self.warmup_steps = config.warmup_steps or config.warmup_epochs * self.steps_per_epoch
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
        self.validations = Validations()
        comm.step = 0
        self.last_checkpoint = None
        self.tensorboard = None  # rank 0's loggers.TensorBoard with --tensorboard
        if saved is not None:
            self._check_resumable(saved, class_name, model.config, base)
            model.load_state_dict(saved.model_state)
            base.load_state_dict(saved.optimizer_state)
            self.start_epoch, comm.step = saved.epoch, saved.step
            self._resume_position(saved)
            self.last_checkpoint = saved.path
        apply_hyperparameters(base, config)
        try:
            self.optimizer = distributed.DistributedOptimizer(
                base, comm=comm, backward_passes_per_step=config.accumulate,
                compression=config.compression, deterministic=config.deterministic,
                micro_batches=config.micro_batches, bucket_mb=config.bucket_mb,
                overlap={"auto": None, "on": True, "off": False}[config.overlap])
        except ValueError as error:  # e.g. more passes than a float16 message counts
            raise UsageError(str(error)) from None
        self.scheduler = make_scheduler(config, base)
        for _ in range(self.start_epoch if self.scheduler else 0):
            self.scheduler.step()
        self.resumed_from = saved.path if saved is not None else None
        # Samples are read from data.images a batch at a time, never copied as a whole: a
        # memory-mapped file stays shared by the node's ranks (data/mapped.py).
        self.train_labels = data.labels_at(self.train_indices) if self.auto.conditional else None
        self.sampler = DistributedSampler(self.train_indices, num_replicas=comm.size,
                                          rank=comm.rank, shuffle=True, seed=config.seed,
                                          drop_last=True)

    def _plan_shares(self, config, comm):
        """Which positions of each global batch this rank trains on (`share`), and in how
        many forward/backward passes (`parts`, slices of the share). By default rank r
        takes positions r, r + R, ... in --accumulate passes of equal size. In
        deterministic mode it takes the contiguous run of micro-batches that tree.py
        assigns it, one pass each."""
        if not config.deterministic:
            size = self.batch_size
            self.share = slice(comm.rank, None, comm.size)
            self.parts = [slice(i * size, (i + 1) * size) for i in range(config.accumulate)]
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
        or written before step checkpoints existed, starts the next epoch afresh); and
        the run's validations so far."""
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
        self.validations = Validations.restored(position.get("validations"), saved.path)
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
            f"rank, global batch {self.global_batch} ({comm.size} x "
            f"{f'{self.config.accumulate} passes x ' * (self.config.accumulate > 1)}"
            f"{self.batch_size})",
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
        progress = Progress(console, self.config.epochs, self.steps_per_epoch,
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
                record = self.fit_epoch(epoch, progress)
                if self.stops_early():
                    break
        took = f"in {time.perf_counter() - started:.1f} s; outputs in {self.run_dir.path}"
        if self.stops_early():
            console.say(f"early stopping: {self.plateau()}; stopped after epoch {epoch} of "
                        f"{self.config.epochs} {took}")
        else:
            console.say(f"done: epoch {self.config.epochs} reached {took}")
        return TrainResult(self.run_dir.path, record, self.last_checkpoint, self.stops_early())

    def stops_early(self):
        """True when --early-stopping's patience has run out."""
        return 0 < self.config.early_stopping <= self.validations.stale

    def plateau(self):
        best = self.validations
        lowest = (f"{best.best_loss:.4f} after epoch {best.best_epoch}"
                  if best.best_epoch is not None else "none finite")
        return (f"the validation loss has not improved for {best.stale} validation"
                f"{'s' * (best.stale != 1)} (lowest {lowest})")

    def finished_already(self):
        """Why a resumed run has nothing left to train, or None."""
        if self.stops_early():
            return (f"stopped early after epoch {self.start_epoch}: {self.plateau()}; nothing "
                    f"to do; raise --early-stopping (0: never) to go on")
        if self.start_epoch >= self.config.epochs:
            return (f"has trained {self.start_epoch} epochs already (--epochs "
                    f"{self.config.epochs}): nothing to do; raise --epochs to go on")
        return None

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
        """Train (the rest of) `epoch`, evaluate when due, write its metrics line
        (returned), its pictures and loss.png when due, a new best checkpoint, and its
        checkpoint when one is due (or when the run stops early). The metrics line goes
        first: a run killed between the two resumes from an earlier checkpoint, which
        drops that line and trains the epoch again, so metrics.jsonl never loses one."""
        epoch_started = time.perf_counter()
        first = self.start_sample if epoch == self.start_epoch + 1 else 0
        progress.start_epoch(epoch)
        lr = self.optimizer.param_groups[0]["lr"] * self.warmup_factor()
        train = self.train_epoch(epoch, first, progress)
        train_seconds = time.perf_counter() - epoch_started
        due = epoch % self.config.validate_every == 0 or epoch == self.config.epochs
        val = self.validate() if due else None
        improved = val is not None and self.validations.add(val["loss"], epoch)
        trained_samples = max(self.steps_per_epoch * self.global_batch - first, 0)
        record = {"epoch": epoch, "step": self.step, "lr": lr,
                  **{f"train_{k}": v for k, v in train.items()},
                  **{f"val_{k}": v for k, v in (val or {}).items()},
                  "samples_per_s": trained_samples / train_seconds}
        pictures = self.pictures_due(epoch)
        with together(self.comm):
            if self.comm.is_main and pictures:
                self.write_pictures(epoch)
        record["seconds"] = time.perf_counter() - epoch_started
        with together(self.comm):
            if self.comm.is_main:
                self.run_dir.append_metrics(record)
                if self.tensorboard is not None:
                    self.tensorboard.add_record(record)
                if pictures:
                    self.draw_loss_plot()
        if improved:
            self.save(epoch, sample=0, totals=None, best=True)
        if (epoch % self.config.checkpoint_every == 0 or epoch == self.config.epochs
                or self.stops_early()):
            self.save(epoch, sample=0, totals=None)
        if self.scheduler is not None:
            self.scheduler.step()
        progress.end_epoch(summary(record, self.config.epochs))
        return record

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
            self.update()
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
        x = self.data.images[self.train_indices[rows]]
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

    def update(self):
        """The step on the gradients synchronize() has averaged: clipped to
        --clip-grad-norm (Horovod's pattern: synchronize, clip, step inside
        skip_synchronize), at the warmed-up learning rate."""
        if self.config.clip_grad_norm:
            clip_grad_norm_(self.auto.model.parameters(), self.config.clip_grad_norm)
        with self.warmed_up(), self.optimizer.skip_synchronize():
            self.optimizer.step()

    def warmup_factor(self):
        """The warm-up's factor of the learning rate at the next update: (k + 1) / W at
        update k < W (so from lr / W up to lr), then 1."""
        return min(1.0, (self.step + 1) / self.warmup_steps) if self.warmup_steps else 1.0

    @contextmanager
    def warmed_up(self):
        """Each group's learning rate times the warm-up factor for one update, then its
        scheduled rate again: the --lr-schedule goes on from its own rates, and the factor
        depends on the step alone, so a resumed run takes the same rates."""
        groups = self.optimizer.param_groups
        scheduled = [group["lr"] for group in groups]
        factor = self.warmup_factor()
        for group in groups:
            group["lr"] *= factor
        try:
            yield
        finally:
            for group, lr in zip(groups, scheduled):
                group["lr"] = lr

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
                               f"with a lower --lr (--resume PATH --lr X --allow-changes)")
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
    def pictures_due(self, epoch):
        """True when `epoch` draws its pictures and loss.png: every --images-every epochs,
        and at the run's last epoch (--epochs, or the one --early-stopping ends it at)."""
        return (epoch % self.config.images_every == 0 or epoch == self.config.epochs
                or self.stops_early())

    def write_pictures(self, epoch):
        """Inputs above their reconstructions (eval mode) and, for VAEs, samples from the
        prior with the same latents every time, so epochs can be compared; to TensorBoard
        too with --tensorboard."""
        shown = (self.val_indices if len(self.val_indices) else self.train_indices)[:PICTURE_ITEMS]
        self.auto.model.eval()
        with ndl.no_grad():
            x = self.data.images[shown]
            recon = self.auto.forward(x, self.data.labels_at(shown))[0].data
            self.save_picture("reconstructions", images.pairs(x, recon), epoch)
            if self.auto.variational:
                z = self.auto.model.prior(PRIOR_SAMPLES, np.random.default_rng(self.config.seed))
                samples = self.auto.decode(z, self.auto.label_cycle(PRIOR_SAMPLES)).data
                self.save_picture("samples", images.grid(samples, 8), epoch)

    def save_picture(self, kind, picture, epoch):
        images.save_png(picture, self.run_dir.image(kind, epoch))
        if self.tensorboard is not None:
            self.tensorboard.add_image(kind, picture, epoch)

    def save(self, epochs_done, sample, totals, best=False):
        """A checkpoint after `epochs_done` whole epochs and `sample` samples of the next
        (with every rank's partial loss sums, and the validations so far): the next one of
        the --keep rotation, or with `best` checkpoints/best.npz, outside it. Collective."""
        states = None
        if totals is not None:
            states = [totals.state()] if totals.agreed else self.comm.gather_object(totals.state())
        position = {"epoch": epochs_done, "batch": sample // self.global_batch,
                    "sample": sample, "totals": states,
                    "totals_agreed": totals is not None and totals.agreed,
                    "validations": dataclasses.asdict(self.validations)}
        fields = dict(epoch=epochs_done, step=self.step, comm=self.comm, data_position=position,
                      config={"options": options.as_dict(self.config),
                              "global_batch": self.global_batch,
                              "image_shape": list(self.data.image_shape)})
        with together(self.comm):
            if best:
                checkpoint.save_as(os.path.join(self.run_dir.checkpoints, BEST_CHECKPOINT),
                                   self.auto.model, self.optimizer, **fields)
            else:
                self.last_checkpoint = checkpoint.save(
                    self.run_dir.checkpoints, self.auto.model, self.optimizer,
                    keep=self.config.keep, **fields)
                self._next_timed_checkpoint = self._timer()

    def draw_loss_plot(self):
        """loss.png, of every epoch in metrics.jsonl (a resumed run's earlier ones too)."""
        c = self.config
        kind, _, where = self.data.spec.partition(":")
        data = f"{kind}:{os.path.basename(where)}" if where else kind
        title = (f"{c.model} on {data}, global batch {self.global_batch}, lr {c.lr:g}, "
                 f"{c.optimizer}")
        plots.save_loss_plot(self.run_dir.loss_plot, self.run_dir.read_metrics(),
                             c.recon_loss, c.beta, title)


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
