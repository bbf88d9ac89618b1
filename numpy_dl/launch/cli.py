"""The command line: `numpy-dl COMMAND [options]` (also `python -m numpy_dl` and
`python -m numpy_dl.launch`), the same under `mpirun -n N` as in a single process.

The `train` options are generated from the table in config.py and kept as the strings
typed, so that config.resolve converts and checks them exactly as it does a TOML file's
values; only the options actually given are passed on (argparse.SUPPRESS), so a config
file's values survive unless the command line names them. The other commands have a few
options of their own, declared here. Every option's placeholder names the kind of value
it takes (N, X, PATH, DIR, SPEC, ...), the same in every command.

Every way of failing ends in `main` as one line and an exit code (errors.py): argparse's
own errors are turned into UsageError rather than printing a usage block, and the
communicator is started first so that every rank parses, fails and exits together. Usage
errors name the program as the user typed it, and say what was probably meant: the
closest command or option, or the comma-separated form of a list given with spaces.
"""
import argparse
import difflib
import os
import sys

from .. import __version__, distributed, runtime
from . import commands, info
from .train import run as train_run  # the package's `train` is the Python function (api.py)
from . import config as options
from .console import Console
from .errors import LaunchError, UsageError, together
from .inputs import SPLITS

PROG = "python -m numpy_dl.launch"
MAX_IMAGES = 10_000    # images one command draws into a picture
MAX_BATCH = 1 << 20    # samples per forward pass of a command


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one-line UsageErrors, and which takes flags only
    as spelt in full (`--ep 2` is not `--epochs 2`, whatever flags come later)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")

    def _check_value(self, action, value):
        """An unknown COMMAND names the closest command (`trian`: train) rather than
        argparse's list; argparse checks every other value itself."""
        if action.dest == "command" and value not in action.choices:
            close = difflib.get_close_matches(value, list(action.choices), n=1)
            known = f"did you mean {close[0]}?" if close else \
                f"expected one of {', '.join(action.choices)}"
            raise UsageError(f"{self.prog}: unknown command {value!r}; {known}")
        super()._check_value(action, value)


def argument(convert):
    """An argparse `type` from a config.py converter, keeping its message."""
    def parse(text):
        try:
            return convert(text)
        except ValueError as problem:
            raise argparse.ArgumentTypeError(str(problem)) from None
    return parse


def pair_of_indices(text):
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdecimal() for p in parts):
        raise argparse.ArgumentTypeError(f"expected two item indices, as in 3,17, got {text!r}")
    return tuple(int(p) for p in parts)


def value_option(parser, flag, convert, default, help):
    """An option read by a config.py converter, shown with the converter's placeholder (N
    for an integer, X for a number), as the generated train options are."""
    parser.add_argument(flag, type=argument(convert), metavar=convert.metavar,
                        default=default, help=help)


def build_parser(prog=PROG):
    """The parser of every command; `prog` is the program as the user typed it."""
    parser = Parser(prog=prog, description="Train autoencoders data-parallel over MPI, and "
                    "use them. Identical under `mpirun -n N` and as a single process.")
    parser.add_argument("--version", action="version", version=f"numpy_dl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)
    parser.commands = sub.choices  # name -> its parser
    add_train(sub.add_parser(
        "train", help="train a model (with no options: a VAE on the built-in digits, in "
        "seconds)",
        description="Train an autoencoder into a run directory (config.toml, metrics.jsonl, "
        "checkpoints, images), data-parallel under `mpirun -n N` or in one process. With no "
        "options: a VAE on the built-in digits, in seconds. Options may also come from a "
        "TOML file (--config); the command line overrides it."))
    sample = model_command(
        sub, "sample", "draw samples from a VAE's prior: PNG grid and .npy",
        "Draw samples from the prior of a trained variational model: samples.png, a grid, "
        "and samples.npy.", num=64, with_data=False)
    add_seed(sample, "the draws")
    model_command(
        sub, "reconstruct", "reconstruct a dataset: PNG grid and the mean error",
        "Reconstruct a dataset with a trained model: reconstructions.png (inputs above their "
        "reconstructions) and the mean squared error per pixel.", num=16)
    interpolate = model_command(
        sub, "interpolate", "decode a line between two latents: PNG strip",
        "Decode the straight line between the latents of two dataset items (--between) or of "
        "two draws from the prior (--random): interpolation.png, a strip.", with_split=False)
    interpolate.add_argument("--between", type=pair_of_indices, default=(0, 1), metavar="I,J",
                             help="the two dataset items to interpolate between (default 0,1)")
    interpolate.add_argument("--random", action="store_true",
                             help="interpolate between two draws from the prior instead (VAEs)")
    value_option(interpolate, "--steps", options.integer(2, MAX_IMAGES), 10,
                 "images in the strip (default 10)")
    add_seed(interpolate, "the --random draws")
    model_command(
        sub, "encode", "latent features of a dataset to latents.npy",
        "Encode a dataset with a trained model: the latent features (a VAE's means) to "
        "latents.npy, and the labels, if any, to labels.npy.")
    score = model_command(
        sub, "score", "per-sample reconstruction error to scores.csv, and the anomaly "
        "threshold at a quantile",
        "Score every sample of a dataset by its reconstruction error: scores.csv (index, "
        "label, error, anomaly), and the anomaly threshold at --quantile of the errors.")
    value_option(score, "--quantile", options.number(0.0, below=1.0), 0.95,
                 "the threshold's quantile of the errors (default 0.95)")
    evaluate = model_command(
        sub, "evaluate", "held-out loss of a checkpoint: evaluation.csv and .json",
        "Evaluate a checkpoint on held-out data: each sample's negative ELBO with its "
        "reconstruction and KL parts (VAEs; a plain autoencoder's reconstruction loss) to "
        "evaluation.csv, their means to evaluation.json.", with_split=False)
    evaluate.add_argument("--split", choices=("test",) + SPLITS, default="test",
                          help="the dataset's test files (MNIST's t10k-* files), or all of a "
                          "--dataset the run did not train on; or all of the run's dataset, "
                          "or its training or validation part (default test)")
    add_threads(sub.add_parser(
        "info", help="versions, MPI, world size, ranks per node, BLAS and threads",
        description="What a job runs on: the numpy_dl, NumPy and MPI versions, the world "
        "size, ranks per node, and the BLAS library with its threads. Run it under mpirun "
        "to check a cluster before a long job."))
    return parser


def add_train(parser):
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="read options from a TOML file (keys as the options without "
                        "--); options on the command line override it")
    for name, field in options.OPTIONS.items():
        meta = field.metadata
        default = "" if field.default is None else f" (default {_shown(field.default)})"
        extra = {"nargs": "?", "const": meta["flag_value"]} if meta["flag_value"] else {}
        parser.add_argument(options.flag(name), dest=name, default=argparse.SUPPRESS,
                            metavar=meta["metavar"],
                            help=meta["help"] + default, **extra)


def _shown(value):
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def model_command(sub, name, help, description, num=None, with_data=True, with_split=True):
    """A command that reads a checkpoint, with the options such commands share."""
    parser = sub.add_parser(name, help=help, description=description)
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="a checkpoint file, or a run directory (its latest checkpoint)")
    parser.add_argument("--out", metavar="DIR", help=f"output directory (default: the "
                        f"checkpoint's run directory/{name})")
    if num is not None:
        value_option(parser, "--num", options.integer(1, MAX_IMAGES), num,
                     f"images to show (default {num})")
        value_option(parser, "--columns", options.integer(1, MAX_IMAGES), 8,
                     "images per row of the grid (default 8)")
    if with_data:
        parser.add_argument("--dataset", metavar="SPEC", help="dataset (default: the one the "
                            "checkpoint was trained on)")
        if with_split:
            parser.add_argument("--split", choices=SPLITS, default="all",
                                help="all of the dataset, or the run's training or validation "
                                "part (default all)")
        value_option(parser, "--batch-size", options.integer(1, MAX_BATCH), 256,
                     "samples per forward pass (default 256)")
    add_threads(parser)
    return parser


def add_seed(parser, what):
    value_option(parser, "--seed", options.integer(0), 0, f"seed of {what} (default 0)")


def add_threads(parser):
    value_option(parser, "--threads", options.integer(0), 1,
                 "BLAS threads per rank (default 1; 0: cores per node / ranks per node)")


def parse(argv=None, prog=PROG):
    """The parsed arguments; an unknown argument is reported with what was probably meant
    (unknown_argument)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(prog)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = parser.commands[args.command]
        raise UsageError(f"{command.prog}: unknown argument {unknown[0]!r}; "
                         f"{unknown_argument(command, argv, unknown[0])}")
    return args


def unknown_argument(command, argv, stray):
    """What to say about `stray`, an argument of `argv` that `command` does not take: the
    comma-separated form when it is a list's value given after a space (`--hidden-sizes
    256 128`), the launcher's way when it is mpirun's -n, else the closest option."""
    listed = spread_list(command, argv, stray)
    if listed:
        flag, values = listed
        return f"{flag} takes its values comma separated, as in {flag} {values}"
    if stray in ("-n", "-np"):
        return f"the number of ranks is mpirun's option: mpirun -n N {command.prog}"
    flags = [text for action in command._actions for text in action.option_strings]
    typed = stray.split("=")[0]
    names = {flag.lstrip("-"): flag for flag in flags}
    close = ([flag for flag in flags if flag.startswith(typed)] if typed.startswith("--")
             else []) or [names[name] for name in difflib.get_close_matches(
                 typed.lstrip("-"), list(names), n=1)]
    hint = f"did you mean {close[0]}? " if close else ""
    return f"{hint}`{command.prog} --help` lists the options"


def spread_list(command, argv, stray):
    """(flag, "256,128") when `stray` is one of the words after a comma-list option's value
    (`--hidden-sizes 256 128` or `--hidden-sizes=256 128`), with every value joined by
    commas; else None."""
    lists = [flag for action in command._actions if action.metavar and "," in action.metavar
             for flag in action.option_strings]
    for index, word in enumerate(argv):
        flag, equals, value = word.partition("=")
        if flag not in lists:
            continue
        given, start = ([value], index + 1) if equals else (argv[index + 1:index + 2], index + 2)
        after = []
        for extra in argv[start:]:
            if extra.startswith("-"):
                break
            after.append(extra)
        if stray in after:
            values = [part for text in given + after for part in text.split(",") if part]
            return flag, ",".join(values)
    return None


def train_layers(args):
    """[(source, {option: value})]: the config file's options, then the command line's."""
    given = {name: value for name, value in vars(args).items() if name in options.OPTIONS}
    layers = []
    if "config" in args:
        layers.append((f"config file {args.config}", options.read_toml(args.config)))
    return layers + [(None, given)]


def main(argv=None, prog=PROG):
    """Run one command; returns the exit code (errors.py lists them: 0 done, 1 a failed
    run, 2 a usage error, 3 non-finite training, 75 stopped by a signal after a
    checkpoint). `prog` is how the user started it, as usage and errors show it."""
    runtime.keep_freed_memory()
    try:
        comm = distributed.init()
    except distributed.MPIJobError as error:
        if error.task == 0:  # the others stop silently: one line, not one per task
            print(f"numpy_dl: error: {error}", file=sys.stderr, flush=True)
        return UsageError.exit_code
    if not comm.is_main:  # rank 0 alone prints output (argparse's --help included)
        sys.stdout = open(os.devnull, "w")
    console = Console(comm)
    console.capture_warnings()
    try:
        with together(comm):
            args = parse(argv, prog)
            layers = train_layers(args) if args.command == "train" else None
        if args.command == "train":
            return train_run(layers, comm, console)
        runtime.set_blas_threads(args.threads, comm.ranks_per_node)
        if args.command == "info":
            return info.run(args, comm, console)
        return commands.COMMANDS[args.command](args, comm, console)
    except LaunchError as error:
        return console.fail(error)
    except KeyboardInterrupt:
        console.warn("interrupted")
        return 130


def script():
    """The `numpy-dl` command that installing the package creates (pyproject.toml's
    [project.scripts])."""
    return main(prog="numpy-dl")
