"""The training configuration: one table of options, read from TOML and the command line.

Each option is declared once, as a field of `TrainConfig` with its default, help text
and converter; the command line (`--batch-size 32`) and a TOML file (`batch-size = 32`,
or `batch_size`) are generated from that table, so the two can never disagree. Values
from every source pass through the same converter, so `epochs = "ten"` in a file and
`--epochs ten` on the command line fail with the same message.

Layers are applied over the defaults in order (`resolve`): a resumed run's checkpoint,
then the config file, then the command line. `to_toml` writes the options that decide
what is trained, so `train --config RUN/config.toml` trains the same model again; where
to write (`out`) and `resume` are left out, so the rerun goes to a fresh directory.
"""
import dataclasses
import json
import math
from dataclasses import dataclass, field

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .errors import UsageError

MODEL_NAMES = ("ae", "conv-ae", "vae", "conv-vae", "cvae")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("none", "step", "exponential", "cosine")
RECON_LOSSES = ("mse", "bce")
COMPRESSIONS = ("none", "fp16")
OVERLAPS = ("auto", "on", "off")

# The global batch of a run that gives neither --global-batch-size nor --batch-size: a
# fixed number, so that the default run is the same at any rank count.
DEFAULT_GLOBAL_BATCH = 32

# Alternatives: a layer (the command line over a config file, say) that gives one of them
# replaces the earlier layers' choice of either.
BATCH_OPTIONS = ("batch_size", "global_batch_size")

# Options that say where and how a run goes rather than what it trains.
PLACEMENT = ("out", "resume", "allow_changes", "quiet")

# Options that decide the model's architecture; a checkpoint only resumes its own.
ARCHITECTURE = ("model", "latent_dim", "hidden_sizes", "base_channels")

# Options a resumed run may change without --allow-changes: they do not change what each
# step computes (the batch sizes and --accumulate are checked as the global batch they
# make: how it is cut into passes changes only the rounding, as the rank count does), or
# only when the run validates and when it stops.
FREE_TO_CHANGE = ("epochs", "checkpoint_every", "checkpoint_every_steps",
                  "checkpoint_every_minutes", "keep", "replica_check_every", "threads",
                  "batch_size", "global_batch_size", "accumulate", "validate_every",
                  "early_stopping", "images_every", "tensorboard", "overlap", "bucket_mb")


# ------------------------------------------------------------------ converters
# Each takes a value from TOML (typed) or the command line (a string) and returns it
# converted, or raises ValueError saying what was expected.

def integer(minimum, maximum=None):
    bounds = f">= {minimum}" + ("" if maximum is None else f" and <= {maximum:,}")

    def convert(value):
        if isinstance(value, str) and value.strip().lstrip("+-").isdecimal():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
                maximum is not None and value > maximum):
            raise ValueError(f"expected an integer {bounds}, got {repr(value)[:40]}")
        return value
    convert.metavar = "N"
    return convert


def number(minimum=0.0, below=None, positive=False):
    bounds = f"> {minimum}" if positive else f">= {minimum}"
    if below is not None:
        bounds += f" and < {below}"

    def convert(value):
        try:
            x = math.nan if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            x = math.nan
        low_ok = x > minimum if positive else x >= minimum
        if not (math.isfinite(x) and low_ok and (below is None or x < below)):
            raise ValueError(f"expected a number {bounds}, got {value!r}")
        return x
    convert.metavar = "X"
    return convert


def boolean(value):
    """true/false from TOML, or the command line's true/false/yes/no/1/0."""
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise ValueError(f"expected true or false, got {value!r}")


boolean.metavar = "BOOL"


def choice(*names):
    def convert(value):
        if value not in names:
            raise ValueError(f"expected one of {', '.join(names)}, got {value!r}")
        return value
    convert.metavar = "{" + ",".join(names) + "}"
    return convert


def integer_list(value):
    """[256, 128] from TOML, or "256,128" from the command line; "" is no layers."""
    sizes = value
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        sizes = [int(part) if part.isdecimal() else part for part in parts]
    if not isinstance(sizes, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
        raise ValueError(f"expected positive integers, as in 256,128, got {value!r}")
    return tuple(sizes)


integer_list.metavar = "N,N,..."


def text(value):
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


text.metavar = "TEXT"


def option(default, help, convert, metavar=None, flag_value=None):
    """A TrainConfig field; `flag_value` is what the bare flag means (`--resume` alone)."""
    return field(default=default, metadata={"help": help, "convert": convert,
                                            "metavar": metavar or convert.metavar,
                                            "flag_value": flag_value})


# ------------------------------------------------------------------ the table

@dataclass(frozen=True)
class TrainConfig:
    model: str = option("vae", "autoencoder to train", choice(*MODEL_NAMES))
    dataset: str = option("digits", "digits, mnist-5k (both built in), mnist:DIR, "
                          "fashion-mnist:DIR, npz:PATH or synthetic[:N]", text, metavar="SPEC")
    epochs: int = option(60, "number of passes over the training set", integer(1))
    batch_size: int = option(None, "samples per rank per forward pass, instead of the global "
                             "batch: the global batch is this times the ranks (times "
                             "--accumulate), so it grows with the rank count", integer(1))
    global_batch_size: int = option(None, f"samples per step over all ranks, shared out "
                                    f"equally (default {DEFAULT_GLOBAL_BATCH} when "
                                    f"--batch-size is not given): the same run at any rank "
                                    f"count", integer(1))
    accumulate: int = option(1, "forward/backward passes per step on each rank (gradient "
                             "accumulation): the global batch is cut into this many, and "
                             "the step is the one of the whole batch, in less memory",
                             integer(1, 1024))
    compression: str = option("none", "gradients rounded to this for the all-reduce: fp16 "
                              "halves the bytes sent (pays on slow networks only)",
                              choice(*COMPRESSIONS))
    overlap: str = option("auto", "all-reduce the gradients in buckets while backward still "
                          "runs: on hides communication behind computation on a network; "
                          "auto turns it on when the ranks span nodes", choice(*OVERLAPS))
    bucket_mb: float = option(0.5, "size of the --overlap buckets in MiB",
                              number(positive=True))
    clip_grad_norm: float = option(0.0, "clip the averaged gradients to this total L2 norm "
                                   "before each update (0: no clipping)", number())
    lr: float = option(3e-3, "learning rate", number(positive=True))
    optimizer: str = option("adam", "optimizer", choice(*OPTIMIZERS))
    weight_decay: float = option(0.0, "L2 penalty (decoupled for adamw)", number())
    momentum: float = option(0.9, "momentum (sgd only)", number(0.0, below=1.0))
    lr_schedule: str = option("none", "learning-rate schedule, stepped once per epoch: step "
                              "multiplies by --lr-gamma every --lr-step epochs, exponential "
                              "every epoch, cosine anneals to 0 over --epochs",
                              choice(*LR_SCHEDULES))
    lr_gamma: float = option(0.5, "decay factor of the step and exponential schedules",
                             number(positive=True))
    lr_step: int = option(10, "epochs between decays of the step schedule", integer(1))
    warmup_epochs: int = option(0, "epochs of linear learning-rate warm-up: update k of the "
                                "W steps they hold runs at (k + 1) / W times the scheduled "
                                "rate (0: none)", integer(0))
    warmup_steps: int = option(0, "steps of linear learning-rate warm-up, instead of "
                               "--warmup-epochs", integer(0))
    beta: float = option(1.0, "weight of the KL term (VAEs; beta-VAE when > 1)", number())
    latent_dim: int = option(16, "size of the latent code", integer(1))
    hidden_sizes: tuple = option((256, 128), "hidden layer sizes of the MLP models",
                                 integer_list)
    base_channels: int = option(16, "channels of the first convolution (conv models; doubled "
                                "per layer)", integer(1))
    recon_loss: str = option("bce", "reconstruction loss, summed over each sample's pixels",
                             choice(*RECON_LOSSES))
    noise_std: float = option(0.0, "std of Gaussian noise added to the inputs (denoising)",
                              number())
    val_fraction: float = option(0.1, "held-out fraction evaluated every --validate-every "
                                 "epochs (0: none)", number(0.0, below=1.0))
    validate_every: int = option(1, "epochs between validations (the last epoch is always "
                                 "validated)", integer(1))
    early_stopping: int = option(0, "stop when the validation loss has not improved for "
                                 "this many validations in a row (0: never)", integer(0))
    seed: int = option(0, "seed of the initialisation, split, data order and noise",
                       integer(0))
    deterministic: bool = option(False, "the same bits at every rank count that divides "
                                 "--micro-batches: each global batch in that many "
                                 "micro-batches, summed in one fixed tree (BLAS threads "
                                 "default to 1; give the global batch, not --batch-size)",
                                 boolean,
                                 flag_value="true")
    micro_batches: int = option(8, "micro-batches per global batch in --deterministic mode "
                                "(a power of two)", integer(1, 1 << 20))
    checkpoint_every: int = option(5, "epochs between checkpoints (the last epoch is always "
                                   "saved)", integer(1))
    checkpoint_every_steps: int = option(0, "steps between checkpoints inside epochs (0: "
                                         "none)", integer(0))
    checkpoint_every_minutes: float = option(0.0, "minutes between checkpoints inside epochs "
                                             "(0: none)", number())
    keep: int = option(3, "checkpoints to keep", integer(1))
    replica_check_every: int = option(500, "steps between checks that every rank holds the "
                                      "same parameters (0: never)", integer(0))
    threads: int = option(1, "BLAS threads per rank (0: cores per node / ranks per node); "
                          "one by default, as torchrun: the built-in models' matrices are "
                          "too small for threads to pay, and threads collapse on busy cores",
                          integer(0))
    images_every: int = option(12, "epochs between the sample and reconstruction images "
                               "and redraws of loss.png (the last epoch always has them)",
                               integer(1))
    tensorboard: bool = option(False, "also write TensorBoard event files to "
                               "RUN/tensorboard (needs pip install 'numpy_dl[tensorboard]')",
                               boolean, flag_value="true")
    quiet: bool = option(False, "print only warnings and errors (no configuration, epoch "
                         "lines or progress bar); the run directory and its logs are "
                         "written as ever", boolean, flag_value="true")
    out: str = option(None, "run directory (default: runs/MODEL-DATASET-TIME)", text,
                      metavar="DIR")
    resume: str = option(None, "continue from a checkpoint: auto (the latest in --out, if "
                         "any) or a checkpoint file or run directory", text,
                         metavar="auto|PATH", flag_value="auto")
    allow_changes: bool = option(False, "resume even when the options change what the run "
                                 "computes (data, optimiser settings, global batch; never the "
                                 "model); changes are recorded in RUN/changes.jsonl", boolean,
                                 flag_value="true")


OPTIONS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def flag(name):
    """The command-line spelling of an option: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


# ------------------------------------------------------------------ reading

def resolve(*layers):
    """A TrainConfig from the defaults overridden by each (source, {name: value}) layer in
    turn; raises UsageError naming the source, the option and what it accepts. The
    command line's source is None: its errors name the flag (--epochs). A layer that gives
    either of BATCH_OPTIONS drops both from the layers below it."""
    values = {}
    for source, layer in layers:
        if any(name in layer for name in BATCH_OPTIONS):
            for name in BATCH_OPTIONS:
                values.pop(name, None)
        for name, value in layer.items():
            if name not in OPTIONS:
                raise _unknown_option(source, name)
            where = flag(name) if source is None else f"{source}: {name.replace('_', '-')}"
            try:
                values[name] = OPTIONS[name].metadata["convert"](value)
            except ValueError as problem:
                raise UsageError(f"{where}: {problem}") from None
    return TrainConfig(**values)


def _unknown_option(source, typed):
    return UsageError(f"{source}: unknown option {typed!r}; expected one of "
                      f"{', '.join(key.replace('_', '-') for key in OPTIONS)}")


def read_toml(path):
    """The options in a TOML file as {name: value}, keys spelt with - or _."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"config file {path} cannot be read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"config file {path} is not valid TOML: {error}; expected lines "
                         f"such as `epochs = 10`") from None
    tables = [key for key, value in document.items() if isinstance(value, dict)]
    if tables:
        raise UsageError(f"config file {path}: unexpected table [{tables[0]}]; expected "
                         f"top-level keys such as `epochs = 10`")
    unknown = [key for key in document if key.replace("-", "_") not in OPTIONS]
    if unknown:
        raise _unknown_option(f"config file {path}", unknown[0])
    return {key.replace("-", "_"): value for key, value in document.items()}


def from_checkpoint(saved):
    """The options stored in a checkpoint by `train` ({} for a checkpoint written
    otherwise, e.g. by a user's own script)."""
    stored = saved.config if isinstance(saved.config, dict) else {}
    return dict(stored.get("options", {}))


# ------------------------------------------------------------------ writing

def as_dict(config, placement=False):
    """{name: value} of the options that are set, without `out` and `resume` unless
    `placement`."""
    return {name: getattr(config, name) for name in OPTIONS
            if getattr(config, name) is not None and (placement or name not in PLACEMENT)}


def to_toml(config, header=()):
    """The options that decide what is trained, as TOML, after `header` comment lines."""
    lines = [f"# {line}" for line in header]
    for name, value in as_dict(config).items():
        lines.append(f"{name.replace('_', '-')} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    return repr(value)
