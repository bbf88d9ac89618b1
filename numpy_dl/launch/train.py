"""The `train` command: data-parallel training of an autoencoder, the same code on one
process and on N MPI ranks.

Each rank holds the whole dataset and trains on its shard of every global batch (a
DistributedSampler over the training split, dropping the tail that does not fill a
global batch); the DistributedOptimizer averages the gradients, so every rank takes the
same step. After each epoch the held-out split is evaluated across the ranks, rank 0
writes the metrics and pictures, and every --checkpoint-every epochs a checkpoint.

Same global batch, same run. The sampler shuffles with (seed, epoch) and deals position
p of the epoch's order to rank p % R, so global batch k is positions [kB, (k+1)B) of that
order whatever the rank count R, and rank r's row j is its position r + R*j. All training
randomness (denoising noise and the VAE's reparameterisation noise) is drawn for the
whole global batch from (seed, step) and each rank takes its rows [r::R]. A run with
-n 1 --batch-size 64 and one with -n 2 --batch-size 32 therefore see the same samples
with the same noise at every step and differ only in float rounding; and a run resumed
from a checkpoint continues exactly as if it had never stopped.
"""
import dataclasses
import math
import time

import numpy as np

import numpy_dl as ndl
from .. import distributed, models, optim, runtime
from ..data import DataLoader, DistributedSampler, TensorDataset
from ..distributed import checkpoint
from ..loss import VAELoss
from . import config as options
from . import images, inputs, rundir
from .errors import RunError, UsageError, together
from .evaluate import Totals, validate
from .modeling import Autoencoding, describe, model_arguments
from .progress import Progress

PICTURE_ITEMS = 16     # validation images shown with their reconstructions each epoch
PRIOR_SAMPLES = 64     # samples from the prior drawn each epoch (VAEs)


def run(layers, comm, console):
    """Train as the (source, {option: value}) layers say; returns the exit code."""
    with together(comm):
        config = options.resolve(*layers)
    threads = runtime.set_blas_threads(config.threads, comm.ranks_per_node)
    with together(comm):
        run_dir, resume_from = rundir.plan(config, comm)
        saved = checkpoint.load(resume_from, comm) if resume_from else None
    with together(comm):
        if saved is not None:
            config = options.resolve((f"checkpoint {saved.path}", options.from_checkpoint(saved)),
                                     *layers)
        config = dataclasses.replace(config, dataset=inputs.with_absolute_path(config.dataset))
        training = Training(config, inputs.load(config.dataset), saved, run_dir, comm)
    distributed.broadcast_parameters(training.auto.model, comm)
    if training.start_epoch >= config.epochs:
        console.say(f"{run_dir.path} has trained {training.start_epoch} epochs already "
                    f"(--epochs {config.epochs}): nothing to do; raise --epochs to go on")
        return 0
    console.say(training.header(threads))
    with together(comm):
        distributed.on_root(lambda: run_dir.prepare(training.config_toml(), training.start_epoch),
                            comm)
    training.fit(console)
    return 0


class Training:
    """One training run: the data, the model and optimizer on this rank, and the loop.

    Building one is local work (no collectives), so that a rank failing half-way raises
    with the others inside the same `together` block; the parameters are broadcast after.
    """

    def __init__(self, config, data, saved, run_dir, comm):
        self.config, self.data, self.run_dir, self.comm = config, data, run_dir, comm
        self.train_indices, self.val_indices = inputs.split(len(data.images),
                                                            config.val_fraction, config.seed)
        self.global_batch = config.batch_size * comm.size
        self.steps_per_epoch = len(self.train_indices) // self.global_batch
        if self.steps_per_epoch == 0:
            raise UsageError(f"the global batch of {self.global_batch} ({comm.size} x "
                             f"--batch-size {config.batch_size}) is larger than the "
                             f"{len(self.train_indices)} training samples of {data.spec}; "
                             f"lower --batch-size")
        class_name, arguments = model_arguments(config, data.image_shape, data.num_classes)
        ndl.manual_seed(config.seed)
        model = models.build(class_name, **arguments)
        self.auto = Autoencoding(model, data.image_shape)
        self.objective = VAELoss(config.recon_loss, config.beta, reduction="none")
        base = make_optimizer(config, model.parameters())
        self.start_epoch, comm.step = 0, 0
        if saved is not None:
            self._check_resumable(saved, class_name, model.config, base)
            model.load_state_dict(saved.model_state)
            base.load_state_dict(saved.optimizer_state)
            self.start_epoch, comm.step = saved.epoch, saved.step
        apply_hyperparameters(base, config)
        self.optimizer = distributed.DistributedOptimizer(base, comm=comm)
        self.scheduler = make_scheduler(config, base)
        for _ in range(self.start_epoch if self.scheduler else 0):
            self.scheduler.step()
        self.resumed_from = saved.path if saved is not None else None
        self._loader()

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

    def _loader(self):
        """This rank's batches: the training split as a dataset, dealt by the sampler."""
        arrays = [self.data.images[self.train_indices]]
        if self.auto.conditional:
            arrays.append(self.data.labels[self.train_indices])
        dataset = TensorDataset(*arrays)
        self.sampler = DistributedSampler(dataset, num_replicas=self.comm.size,
                                          rank=self.comm.rank, shuffle=True,
                                          seed=self.config.seed, drop_last=True)
        self.loader = DataLoader(dataset, batch_size=self.config.batch_size,
                                 sampler=self.sampler, drop_last=True)

    # ------------------------------------------------------------------ reporting
    def header(self, threads):
        c, comm = self.config, self.comm
        parameters = sum(p.data.size for p in self.auto.model.parameters())
        shape = "x".join(map(str, self.data.image_shape))
        lines = [
            f"numpy_dl {ndl.__version__} train: {comm.size} rank{'s' * (comm.size > 1)} "
            f"({comm.ranks_per_node} per node), {threads} BLAS thread{'s' * (threads > 1)} per "
            f"rank, global batch {self.global_batch} ({comm.size} x {c.batch_size})",
            f"run directory: {self.run_dir.path}",
            *([f"resuming from {self.resumed_from} after epoch {self.start_epoch}"]
              if self.resumed_from else []),
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
        for epoch in range(self.start_epoch + 1, self.config.epochs + 1):
            epoch_started = time.perf_counter()
            progress.start_epoch(epoch)
            lr = self.optimizer.param_groups[0]["lr"]
            train = self.train_epoch(epoch, progress)
            train_seconds = time.perf_counter() - epoch_started
            val = self.validate()
            record = {"epoch": epoch, "step": self.step, "lr": lr,
                      **{f"train_{k}": v for k, v in train.items()},
                      **{f"val_{k}": v for k, v in (val or {}).items()},
                      "samples_per_s": self.steps_per_epoch * self.global_batch / train_seconds}
            with together(self.comm):
                if not math.isfinite(train["loss"]):
                    raise RunError(f"the training loss became {train['loss']} in epoch "
                                   f"{epoch}; lower --lr")
                if self.comm.is_main:
                    self.write_pictures(epoch)
            if epoch % self.config.checkpoint_every == 0 or epoch == self.config.epochs:
                with together(self.comm):
                    self.save(epoch)
            if self.scheduler is not None:
                self.scheduler.step()
            record["seconds"] = time.perf_counter() - epoch_started
            with together(self.comm):
                if self.comm.is_main:
                    self.run_dir.append_metrics(record)
            progress.end_epoch(summary(record, self.config.epochs))
        with together(self.comm):
            if self.comm.is_main:
                self.draw_loss_curve()
        console.say(f"done: epoch {self.config.epochs} reached in "
                    f"{time.perf_counter() - started:.1f} s; outputs in {self.run_dir.path}")

    def train_epoch(self, epoch, progress):
        """One pass over this rank's shard; the means over all ranks' samples."""
        self.auto.model.train()
        self.sampler.set_epoch(epoch)
        totals = Totals(self.auto.variational)
        for batch in self.loader:
            x, labels = batch[0], (batch[1] if self.auto.conditional else None)
            pixel_noise, latent_noise = self.noise()
            seen = x if pixel_noise is None else np.clip(x + pixel_noise, 0.0, 1.0)
            recon, mu, logvar = self.auto.forward(seen, labels, latent_noise)
            reconstruction, kl = self.objective.parts(recon, x, mu, logvar)
            per_sample = self.objective.negative_elbo(reconstruction, kl)
            loss = per_sample.mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()  # advances self.step
            if self.config.replica_check_every and self.step % self.config.replica_check_every == 0:
                self.check_replicas()
            totals.add(per_sample, reconstruction, kl)
            progress.step(loss.item())
        return totals.means(self.comm)

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
        global batch: drawn for the whole global batch from (seed, step), rows
        [rank::size] kept (see the module docstring)."""
        c, comm = self.config, self.comm

        def draw(stream, shape):
            generator = np.random.default_rng([c.seed, self.step, stream])
            whole = generator.standard_normal((self.global_batch,) + shape, dtype=np.float32)
            return whole[comm.rank::comm.size]

        pixels = draw(0, self.data.image_shape) * np.float32(c.noise_std) if c.noise_std else None
        latent = draw(1, (self.auto.latent_dim,)) if self.auto.variational else None
        return pixels, latent

    def validate(self):
        if len(self.val_indices) == 0:
            return None
        return validate(self.auto, self.objective, self.data, self.val_indices,
                        self.config.batch_size, self.comm)

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

    def save(self, epoch):
        checkpoint.save(self.run_dir.checkpoints, self.auto.model, self.optimizer, epoch=epoch,
                        step=self.step, comm=self.comm, keep=self.config.keep,
                        config={"options": options.as_dict(self.config),
                                "image_shape": list(self.data.image_shape)},
                        data_position={"epoch": epoch, "batch": 0})

    def draw_loss_curve(self):
        records = self.run_dir.read_metrics()
        series = {"train loss": [r["train_loss"] for r in records]}
        if any("val_loss" in r for r in records):
            series["validation loss"] = [r.get("val_loss", math.nan) for r in records]
        images.save_png(images.loss_curve([r["epoch"] for r in records], series),
                        self.run_dir.loss_curve)


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
