"""Fuzzed inputs: dataset files (.npz, .npy, IDX), command lines and TOML configs, made by
Hypothesis (seeded with derandomize, bounded in examples and time). Every outcome is a
success or the package's one-line error with its documented exit code: never a
traceback, a hang, or an input accepted that should not be."""
import contextlib
import gzip
import io
import os
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distributed_helpers import UNDER_MPI
from numpy_dl.data import datasets
from numpy_dl.data.datasets import DatasetError
from numpy_dl.launch.cli import main

pytestmark = pytest.mark.skipif(UNDER_MPI, reason="runs the launcher in this process")

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
EXIT_CODES = (0, 1, 2, 3)


# ------------------------------------------------------------------ dataset files
def check_loaded(spec):
    """datasets.load(spec) gives sound data or a DatasetError; nothing else."""
    try:
        images, labels = datasets.load(spec)
    except DatasetError as error:
        assert "\n" not in str(error)
        return
    assert images.dtype == np.float32 and images.ndim == 4 and len(images) >= 1
    assert np.all((images >= 0) & (images <= 1))
    assert labels is None or (labels.dtype == np.int64 and labels.shape == (len(images),)
                              and labels.min() >= 0)


def npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


VALID_IMAGES = np.random.default_rng(0).integers(0, 256, (6, 5, 5), dtype=np.uint8)
VALID_FILES = {
    "npz": npz_bytes(images=VALID_IMAGES, labels=np.arange(6) % 3),
    "npy": npy_bytes(VALID_IMAGES.astype(np.float32) / 255),
}


def mutate(data, draw):
    """A few bit flips, or a cut and splice, of `data`."""
    data = bytearray(data)
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    start = draw(st.integers(0, len(data)))
    end = draw(st.integers(start, len(data)))
    return bytes(data[:start]) + draw(st.binary(max_size=32)) + bytes(data[end:])


@FUZZ
@given(kind=st.sampled_from(sorted(VALID_FILES)), data=st.data())
def test_damaged_array_files_load_or_give_one_dataset_error(kind, data):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, f"data.{kind}")
        with open(path, "wb") as file:
            file.write(mutate(VALID_FILES[kind], data.draw))
        check_loaded(f"npz:{path}")


ODD_ARRAYS = st.one_of(
    st.just(np.zeros((3, 4, 4), "m8[s]")), st.just(np.zeros((3, 4, 4), "M8[D]")),
    st.just(np.zeros((3, 4, 4), "U2")), st.just(np.full((3, 4, 4), np.nan, np.float32)),
    st.just(np.full((3, 4, 4), 300, np.int64)), st.just(np.zeros((0, 4, 4), np.uint8)),
    st.just(np.zeros((3, 4, 4), np.complex64)), st.just(np.zeros((3, 7), np.uint8)),
    st.just(np.zeros((3, 1, 4, 4, 1), np.uint8)), st.just(np.zeros(3, np.uint8)))
ODD_LABELS = st.one_of(st.none(), st.just(np.array([2 ** 64 - 1, 0, 1], np.uint64)),
                       st.just(np.array([-1, 0, 1])), st.just(np.array([0.5, 1, 2])),
                       st.just(np.array([0, 1])), st.just(np.array([10 ** 12, 0, 1])))


@FUZZ
@given(images=ODD_ARRAYS, labels=ODD_LABELS)
def test_odd_arrays_are_refused_with_one_line(images, labels):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "data.npz")
        arrays = {"images": images} if labels is None else {"images": images, "labels": labels}
        with open(path, "wb") as file:
            file.write(npz_bytes(**arrays))
        check_loaded(f"npz:{path}")


def idx_bytes(magic, dims, payload):
    return (np.array([magic, *dims], ">u4").tobytes() + payload)


@FUZZ
@given(dims=st.lists(st.integers(0, 2 ** 32 - 1), min_size=3, max_size=3),
       labels=st.integers(0, 2 ** 32 - 1), gzipped=st.booleans(), data=st.data())
def test_idx_headers_of_any_size_are_checked_before_allocation(dims, labels, gzipped, data):
    with tempfile.TemporaryDirectory() as directory:
        images = idx_bytes(0x803, dims, bytes(data.draw(st.integers(0, 200))))
        label_file = idx_bytes(0x801, [labels], bytes(data.draw(st.integers(0, 8))))
        for name, content in (("train-images-idx3-ubyte", images),
                              ("train-labels-idx1-ubyte", label_file)):
            if gzipped:
                content, name = gzip.compress(content), name + ".gz"
            with open(os.path.join(directory, name), "wb") as file:
                file.write(content)
        check_loaded(f"mnist:{directory}")


# ------------------------------------------------------------------ command lines and configs
def run_main(*argv):
    """(exit code, stdout, stderr) of the launcher in this process."""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit:  # --help and --version end through argparse
            code = exit.code
    return code, out.getvalue(), err.getvalue()


def assert_one_line_outcome(code, err):
    assert "Traceback" not in err, err
    assert code in EXIT_CODES, (code, err)
    errors = [line for line in err.splitlines() if line.startswith("numpy_dl:")]
    assert len(errors) == (0 if code == 0 else 1), err


VALUES = st.one_of(st.integers(-3, 70).map(str), st.sampled_from(
    ["0", "-1", "1e9", "nan", "inf", "9223372036854775808", "10" * 20, "", "x", "256,128",
     "64,", ",", "auto", "digits", "synthetic:40", "synthetic:0", "synthetic:1e3",
     "npz:/no/such.npz", "mnist:/nowhere", "vae", "ae", "conv-ae", "cvae", "adam", "sgd",
     "step", "cosine", "bce", "mse", "true", "\u00e9\u0000", "1,2,3", "fp16", "none"]))
TRAIN_FLAGS = ["--model", "--dataset", "--epochs", "--batch-size", "--global-batch-size",
               "--lr", "--optimizer", "--weight-decay", "--momentum", "--lr-schedule",
               "--lr-gamma", "--lr-step", "--beta", "--latent-dim", "--hidden-sizes",
               "--base-channels", "--recon-loss", "--noise-std", "--val-fraction", "--seed",
               "--checkpoint-every", "--checkpoint-every-steps", "--keep",
               "--replica-check-every", "--threads", "--resume", "--bogus", "--ep",
               "--accumulate", "--compression", "--clip-grad-norm", "--warmup-epochs",
               "--warmup-steps", "--validate-every", "--early-stopping", "--deterministic"]
QUICK = ["--dataset", "synthetic:48", "--epochs", "1", "--hidden-sizes", "16",
         "--latent-dim", "2", "--base-channels", "2", "--batch-size", "16"]


@settings(FUZZ, max_examples=80)
@given(pairs=st.lists(st.tuples(st.sampled_from(TRAIN_FLAGS), VALUES), max_size=4))
def test_fuzzed_train_command_lines_succeed_or_fail_in_one_line(pairs):
    argv = [item for pair in pairs for item in pair]
    with tempfile.TemporaryDirectory() as directory:
        code, _, err = run_main("train", *QUICK, *argv, "--out", os.path.join(directory, "run"))
    assert_one_line_outcome(code, err)


TOML_VALUES = st.one_of(st.integers(-2 ** 70, 2 ** 70), st.floats(), st.booleans(),
                        st.text(max_size=12), st.lists(st.integers(-5, 10 ** 12), max_size=4),
                        st.just({"a": 1}))


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == float("inf") else
                                              "-inf" if value == -float("inf") else repr(value))
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


@settings(FUZZ, max_examples=60)
@given(entries=st.dictionaries(st.sampled_from([f.lstrip("-") for f in TRAIN_FLAGS]
                                               + ["batch_size", "[table]"]),
                               TOML_VALUES, max_size=4),
       garbage=st.one_of(st.none(), st.binary(max_size=40)))
def test_fuzzed_toml_configs_succeed_or_fail_in_one_line(entries, garbage):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "run.toml")
        with open(path, "wb") as file:
            if garbage is not None:
                file.write(garbage)
            else:
                file.write("".join(f"{key} = {toml_value(value)}\n"
                                   for key, value in entries.items()).encode())
        code, _, err = run_main("train", "--config", path, *QUICK,
                                "--out", os.path.join(directory, "run"))
    assert_one_line_outcome(code, err)


COMMAND_VALUES = st.sampled_from(["0", "1", "3", "-2", "10001", "9223372036854775808", "x",
                                  "0.5", "1.5", "3,17", "0,99999", "train", "val", "all",
                                  "test", ""])


@settings(FUZZ, max_examples=60)
@given(command=st.sampled_from(["sample", "reconstruct", "interpolate", "encode", "score",
                                "evaluate"]),
       pairs=st.lists(st.tuples(st.sampled_from(["--num", "--columns", "--steps", "--between",
                                                 "--quantile", "--split", "--batch-size",
                                                 "--seed", "--random", "--dataset"]),
                                COMMAND_VALUES), max_size=3))
def test_fuzzed_commands_on_a_checkpoint_succeed_or_fail_in_one_line(trained, command, pairs):
    argv = [item for pair in pairs for item in pair]
    with tempfile.TemporaryDirectory() as directory:
        code, _, err = run_main(command, "--checkpoint", trained, *argv, "--out", directory)
    assert_one_line_outcome(code, err)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    code, _, err = run_main("train", "--model", "cvae", "--dataset", "digits", "--epochs", "1",
                            "--hidden-sizes", "16", "--latent-dim", "2", "--out", run)
    assert code == 0, err
    return run
