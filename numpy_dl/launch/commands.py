"""The commands that use a trained model: sample, reconstruct, interpolate, encode, score,
evaluate.

Each takes --checkpoint (a checkpoint file such as RUN/checkpoints/best.npz, or a run
directory meaning its latest checkpoint) and rebuilds the model from the checkpoint
alone. The data defaults to the run's own dataset (the checkpoint stores its options) and
--split picks all of it or the run's training or validation part (evaluate: or the test
split). Work over a dataset is shared out over the ranks when run under mpirun, each
sample done once; rank 0 writes the outputs, by default into RUN/<command>/, each file
replaced whole (never left half-written).
"""
import csv
import io
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from ..autograd import no_grad
from ..checkpoint import write_atomically
from ..distributed import checkpoint, on_root
from ..loss import VAELoss
from . import config as options
from . import images, inputs, rundir
from .errors import RunError, UsageError, together
from .evaluate import Totals, map_rows, sample_losses, squared_errors
from .modeling import Autoencoding


@dataclass
class Trained:
    """A checkpoint opened for a command: the model and what the run knew about its data."""
    path: str
    saved: checkpoint.Checkpoint
    auto: Autoencoding
    options: dict      # the training options stored in the checkpoint ({} if none)
    out: str           # where this command writes


def open_checkpoint(args, command, comm):
    """The model in --checkpoint, and the output directory. Collective."""
    with together(comm):
        path = rundir.find_checkpoint(args.checkpoint, comm)
        saved = checkpoint.load(path, comm)
    with together(comm):
        try:
            model = checkpoint.build_model(saved)
        except (ValueError, TypeError, RuntimeError) as error:
            raise RunError(f"checkpoint {path} holds a model that cannot be rebuilt: {error}")
        model.eval()
        out = args.out or os.path.join(rundir.run_of(path), command)
        on_root(lambda: rundir.check_output_directory(out), comm)
        return Trained(path, saved, Autoencoding(model, image_shape(saved)),
                       options.from_checkpoint(saved), out)


def image_shape(saved):
    """(C, H, W) of the images the model works on: stored by the launcher, else inferred
    from the model (a conv model's in_channels and image_size; an MLP's input_size as one
    channel of a square image, or a 1 x D row)."""
    stored = saved.config.get("image_shape") if isinstance(saved.config, dict) else None
    if stored:
        return tuple(stored)
    arguments = saved.model_config
    if "image_size" in arguments:
        return (arguments["in_channels"], arguments["image_size"], arguments["image_size"])
    size = arguments["input_size"]
    side = math.isqrt(size)
    return (1, side, side) if side * side == size else (1, 1, size)


def dataset(args, trained, split="all"):
    """(Data, indices of `split`) for a command, checked against the model. The test split
    (evaluate's) is all of the dataset's test files where it has them (MNIST's t10k-*),
    else all of a --dataset that is not the one the run trained on."""
    spec = args.dataset or trained.options.get("dataset")
    if spec is None:
        raise UsageError(f"checkpoint {trained.path} does not say which dataset it was trained "
                         f"on; pass --dataset")
    if split == "test" and not inputs.has_test_files(spec) and (
            inputs.with_absolute_path(spec) == trained.options.get("dataset")):
        raise UsageError(f"dataset {spec} has no test split, and {trained.path} was trained on "
                         f"it; pass --dataset with held-out data (npz:PATH, or mnist:DIR, whose "
                         f"t10k files are its test split), or --split val for the run's "
                         f"validation part")
    data = inputs.load(spec, test=split == "test")
    inputs.check_shape(data, trained.auto.image_shape, f"the model in {trained.path}")
    if trained.auto.conditional and data.labels is None:
        raise UsageError(f"the cvae in {trained.path} needs labels; dataset {spec} has none")
    if split == "test":
        return data, np.arange(len(data.images))
    indices = inputs.select(data, split, trained.options.get("val_fraction", 0.1),
                            trained.options.get("seed", 0))
    return data, indices


def write_outputs(trained, make_files, comm, console):
    """Rank 0 makes {name: bytes} with make_files(), writes them into the output
    directory and lists them. Collective."""
    with together(comm):
        if comm.is_main:
            files = make_files()
            os.makedirs(trained.out, exist_ok=True)
            for name, data in files.items():
                write_atomically(os.path.join(trained.out, name), data)
            console.say("wrote " + ", ".join(os.path.join(trained.out, n) for n in files))


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


# ------------------------------------------------------------------ the commands

def sample(args, comm, console):
    """Decode --num draws from the prior of a VAE: a PNG grid and the array."""
    trained = open_checkpoint(args, "sample", comm)
    with together(comm):
        trained.auto.require_variational("sample")
    auto = trained.auto

    def files():
        with no_grad():
            z = auto.model.prior(args.num, np.random.default_rng(args.seed))
            drawn = auto.decode(z, auto.label_cycle(args.num)).data
        return {"samples.png": images.png_bytes(images.grid(drawn, args.columns)),
                "samples.npy": npy(drawn)}
    write_outputs(trained, files, comm, console)
    return 0


def reconstruction_errors(args, command, comm):
    """(Trained, Data, indices, each index's error on rank 0) for a command that measures
    reconstructions over --split of a dataset. Collective."""
    trained = open_checkpoint(args, command, comm)
    with together(comm):
        data, indices = dataset(args, trained, args.split)
    errors = squared_errors(trained.auto, data, indices, args.batch_size, comm)
    return trained, data, indices, errors


def reconstruct(args, comm, console):
    """The mean reconstruction error over a dataset, and a grid of its first --num items
    above their reconstructions."""
    trained, data, indices, errors = reconstruction_errors(args, "reconstruct", comm)

    def files():
        console.say(f"mean squared error per pixel over {len(indices)} samples of {data.spec} "
                    f"({args.split}): {errors.mean():.6f}")
        shown = indices[:args.num]
        with no_grad():
            recon = trained.auto.forward(data.images[shown], data.labels_at(shown))[0].data
        grid = images.pairs(data.images[shown], recon, args.columns)
        return {"reconstructions.png": images.png_bytes(grid)}
    write_outputs(trained, files, comm, console)
    return 0


def interpolate(args, comm, console):
    """Decode --steps points on the straight line between two latents: those of dataset
    items --between I,J, or two draws from a VAE's prior (--random)."""
    trained = open_checkpoint(args, "interpolate", comm)
    auto = trained.auto
    with together(comm):
        if args.random:
            auto.require_variational("interpolate --random")
            ends = auto.model.prior(2, np.random.default_rng(args.seed))
            labels = auto.label_cycle(1)
        else:
            data, _ = dataset(args, trained)
            ends, labels = item_latents(auto, data, args.between)

    def files():
        alphas = np.linspace(0.0, 1.0, args.steps, dtype=np.float32)[:, None]
        path = (1 - alphas) * ends[0] + alphas * ends[1]
        with no_grad():
            decoded = auto.decode(path, None if labels is None else np.repeat(labels, args.steps))
        return {"interpolation.png": images.png_bytes(images.strip(decoded.data))}
    write_outputs(trained, files, comm, console)
    return 0


def item_latents(auto, data, between):
    """The latent means of dataset items `between` (I, J), and item I's label."""
    count = len(data.images)
    if not all(0 <= i < count for i in between):
        raise UsageError(f"--between {between[0]},{between[1]}: {data.spec} has items "
                         f"0 to {count - 1}")
    chosen = np.asarray(between)
    labels = data.labels_at(chosen)
    with no_grad():
        mu, _ = auto.encode(data.images[chosen], labels)
    return mu.data, None if labels is None else labels[:1]


def encode(args, comm, console):
    """The latent features (a VAE's means) of a dataset: latents.npy, and labels.npy when
    the dataset has labels."""
    trained = open_checkpoint(args, "encode", comm)
    with together(comm):
        data, indices = dataset(args, trained, args.split)
    codes = map_rows(lambda chunk: trained.auto.encode(data.images[chunk],
                                                        data.labels_at(chunk))[0].data,
                     trained.auto, indices, args.batch_size, comm)

    def files():
        written = {"latents.npy": npy(codes)}
        if data.labels is not None:
            written["labels.npy"] = npy(data.labels[indices])
        return written
    write_outputs(trained, files, comm, console)
    return 0


def score(args, comm, console):
    """Per-sample reconstruction error (mean squared error per pixel) to scores.csv, and
    the error at --quantile as the anomaly threshold: samples above it are flagged."""
    trained, data, indices, errors = reconstruction_errors(args, "score", comm)

    def files():
        threshold = float(np.quantile(errors, args.quantile))
        flagged = errors > threshold
        console.say(f"threshold at quantile {args.quantile}: {threshold:.6f}; "
                    f"{int(flagged.sum())} of {len(errors)} samples of {data.spec} "
                    f"({args.split}) score above it")
        return {"scores.csv": scores_csv(indices, data.labels_at(indices), errors, flagged)}
    write_outputs(trained, files, comm, console)
    return 0


def scores_csv(indices, labels, errors, flagged):
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["index", "label", "error", "anomaly"])
    for row, (index, error, flag) in enumerate(zip(indices, errors, flagged)):
        writer.writerow([int(index), "" if labels is None else int(labels[row]),
                         f"{error:.8g}", int(flag)])
    return text.getvalue().encode()


def evaluate(args, comm, console):
    """Held-out evaluation: each sample's loss under the run's objective with beta 1 (a
    VAE's negative ELBO, decoded at the posterior mean as validation does, and its
    reconstruction and KL parts; a plain autoencoder's reconstruction loss), to
    evaluation.csv, and their means over the samples to evaluation.json."""
    trained = open_checkpoint(args, "evaluate", comm)
    with together(comm):
        data, indices = dataset(args, trained, args.split)
    recon_loss = trained.options.get("recon_loss", "bce")
    objective = VAELoss(recon_loss, 1.0, reduction="none")
    names = Totals(trained.auto.variational).names  # loss, recon (and kl)

    def losses(chunk):
        parts = sample_losses(trained.auto, objective, data, chunk)
        return np.stack([part.data.astype(np.float64) for part in parts[:len(names)]], axis=1)
    rows = map_rows(losses, trained.auto, indices, args.batch_size, comm)

    def files():
        means = dict(zip(names, rows.mean(axis=0).tolist()))
        where = f"over {len(indices)} samples of {data.spec} ({args.split})"
        if trained.auto.variational:
            console.say(f"negative ELBO per sample {where}: {means['loss']:.4f} "
                        f"(reconstruction {means['recon']:.4f}, KL {means['kl']:.4f})")
        else:
            console.say(f"reconstruction loss ({recon_loss}, summed over pixels) per sample "
                        f"{where}: {means['recon']:.4f}")
        summary = {"checkpoint": trained.path, "epoch": trained.saved.epoch,
                   "step": trained.saved.step, "dataset": data.spec, "split": args.split,
                   "samples": len(indices), "recon_loss": recon_loss, **means}
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["index", "label", *names])
        labels = data.labels_at(indices)
        for row, (index, values) in enumerate(zip(indices, rows)):
            writer.writerow([int(index), "" if labels is None else int(labels[row]),
                             *(f"{value:.9g}" for value in values)])
        return {"evaluation.csv": table.getvalue().encode(),
                "evaluation.json": (json.dumps(summary, indent=2) + "\n").encode()}
    write_outputs(trained, files, comm, console)
    return 0


COMMANDS = {"sample": sample, "reconstruct": reconstruct, "interpolate": interpolate,
            "encode": encode, "score": score, "evaluate": evaluate}
