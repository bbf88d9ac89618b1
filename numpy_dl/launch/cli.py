"""The command line: `python -m numpy_dl.launch COMMAND [options]`, the same under
`mpirun -n N` as in a single process.

The `train` options are generated from the table in config.py and kept as the strings
typed, so that config.resolve converts and checks them exactly as it does a TOML file's
values; only the options actually given are passed on (argparse.SUPPRESS), so a config
file's values survive unless the command line names them. The other commands have a few
options of their own, declared here.

Every way of failing ends in `main` as one line and an exit code (errors.py): argparse's
own errors are turned into UsageError rather than printing a usage block, and the
communicator is started first so that every rank parses, fails and exits together.
"""
import argparse
import difflib
import os
import sys

from .. import distributed, runtime
from . import commands, info, train
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


def build_parser():
    parser = Parser(prog=PROG, description="Train autoencoders data-parallel over MPI, and use "
                    "them. Identical under `mpirun -n N` and as a single process.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)
    parser.commands = sub.choices  # name -> its parser
    add_train(sub.add_parser("train", help="train a model (with no options: a VAE on the "
                             "built-in digits, in seconds)"))
    sample = model_command(sub, "sample", "draw samples from a VAE's prior: PNG grid and "
                           ".npy", num=64, with_data=False)
    add_seed(sample, "the draws")
    model_command(sub, "reconstruct", "reconstruct a dataset: PNG grid and the mean error",
                  num=16)
    interpolate = model_command(sub, "interpolate", "decode a line between two latents: PNG "
                                "strip", with_split=False)
    interpolate.add_argument("--between", type=pair_of_indices, default=(0, 1), metavar="I,J",
                             help="the two dataset items to interpolate between (default 0,1)")
    interpolate.add_argument("--random", action="store_true",
                             help="interpolate between two draws from the prior instead (VAEs)")
    interpolate.add_argument("--steps", type=argument(options.integer(2, MAX_IMAGES)),
                             default=10, help="images in the strip (default 10)")
    add_seed(interpolate, "the --random draws")
    model_command(sub, "encode", "latent features of a dataset to latents.npy")
    score = model_command(sub, "score", "per-sample reconstruction error to scores.csv, and "
                          "the anomaly threshold at a quantile")
    score.add_argument("--quantile", type=argument(options.number(0.0, below=1.0)),
                       default=0.95, help="the threshold's quantile of the errors "
                       "(default 0.95)")
    add_threads(sub.add_parser("info", help="versions, MPI, world size, ranks per node, BLAS "
                               "and threads"))
    return parser


def add_train(parser):
    parser.add_argument("--config", metavar="FILE.toml", default=argparse.SUPPRESS,
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


def model_command(sub, name, help, num=None, with_data=True, with_split=True):
    """A command that reads a checkpoint, with the options such commands share."""
    parser = sub.add_parser(name, help=help)
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="a checkpoint file, or a run directory (its latest checkpoint)")
    parser.add_argument("--out", metavar="DIR", help=f"output directory (default: the "
                        f"checkpoint's run directory/{name})")
    if num is not None:
        parser.add_argument("--num", type=argument(options.integer(1, MAX_IMAGES)),
                            default=num, help=f"images to show (default {num})")
        parser.add_argument("--columns", type=argument(options.integer(1, MAX_IMAGES)),
                            default=8, help="images per row of the grid (default 8)")
    if with_data:
        parser.add_argument("--dataset", metavar="SPEC", help="dataset (default: the one the "
                            "checkpoint was trained on)")
        if with_split:
            parser.add_argument("--split", choices=SPLITS, default="all",
                                help="all of the dataset, or the run's training or validation "
                                "part (default all)")
        parser.add_argument("--batch-size", type=argument(options.integer(1, MAX_BATCH)),
                            default=256,
                            help="samples per forward pass (default 256)")
    add_threads(parser)
    return parser


def add_seed(parser, what):
    parser.add_argument("--seed", type=argument(options.integer(0)), default=0,
                        help=f"seed of {what} (default 0)")


def add_threads(parser):
    parser.add_argument("--threads", type=argument(options.integer(0)), default=0,
                        help="BLAS threads per rank (default 0: cores per node / ranks per "
                        "node)")


def parse(argv):
    """The parsed arguments; an unknown option is reported with the command's options."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = parser.commands[args.command]
        flags = [text for action in command._actions for text in action.option_strings]
        typed = unknown[0].split("=")[0]
        names = {flag.lstrip("-"): flag for flag in flags}
        close = ([flag for flag in flags if flag.startswith(typed)] if typed.startswith("--")
                 else []) or [names[name] for name in difflib.get_close_matches(
                     typed.lstrip("-"), list(names), n=1)]
        hint = f"did you mean {close[0]}? " if close else ""
        raise UsageError(f"{command.prog}: unknown argument {unknown[0]!r}; {hint}"
                         f"`{command.prog} --help` lists the options")
    return args


def train_layers(args):
    """[(source, {option: value})]: the config file's options, then the command line's."""
    given = {name: value for name, value in vars(args).items() if name in options.OPTIONS}
    layers = []
    if "config" in args:
        layers.append((f"config file {args.config}", options.read_toml(args.config)))
    return layers + [(None, given)]


def main(argv=None):
    """Run one command; returns the exit code (errors.py lists them: 0 done, 1 a failed
    run, 2 a usage error, 3 non-finite training, 75 stopped by a signal after a
    checkpoint)."""
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
            args = parse(argv)
            layers = train_layers(args) if args.command == "train" else None
        if args.command == "train":
            return train.run(layers, comm, console)
        runtime.set_blas_threads(args.threads, comm.ranks_per_node)
        if args.command == "info":
            return info.run(args, comm, console)
        return commands.COMMANDS[args.command](args, comm, console)
    except LaunchError as error:
        return console.fail(error)
    except KeyboardInterrupt:
        console.warn("interrupted")
        return 130
