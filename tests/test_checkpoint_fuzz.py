"""Damaged checkpoints, fuzzed: every bit flip, truncation, splice or edit of a valid
checkpoint either loads to exactly the saved contents or raises CheckpointError with one
line; never another exception, a hang or a wrong accept. Seeded (derandomized) and
bounded, so the suite is repeatable and quick."""
import io
import json
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpy_dl import checkpoint, models, optim
from numpy_dl.checkpoint import CheckpointError

from distributed_helpers import digest

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(path, bytes, loaded contents) of a small trained VAE's checkpoint."""
    directory = tmp_path_factory.mktemp("saved")
    model = models.VariationalAutoencoder(6, [5], 2)
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    model(np.full((3, 6), 0.5, np.float32))[0].sum().backward()
    optimizer.step()
    path = checkpoint.save(directory, model, optimizer, epoch=1, step=4,
                           config={"options": {"lr": 0.01}}, data_position={"epoch": 1, "batch": 0})
    with open(path, "rb") as file:
        return path, file.read(), checkpoint.load(path)


def contents(loaded):
    return (digest(loaded.model_state), json.dumps(loaded.metadata, sort_keys=True),
            digest({f"{i}/{k}": np.asarray(v) for i, entry in loaded.optimizer_state["state"].items()
                    for k, v in entry.items()}))


def outcome(path, data, expected):
    """Load `data` written at `path`: the same contents, or one CheckpointError line."""
    with open(path, "wb") as file:
        file.write(data)
    try:
        loaded = checkpoint.load(path)
    except CheckpointError as error:
        assert "\n" not in str(error)
        return "refused"
    assert contents(loaded) == contents(expected), "damage loaded as different contents"
    model = checkpoint.build_model(loaded)
    assert digest(model.state_dict()) == digest(loaded.model_state)
    return "loaded"


@FUZZ
@given(st.data())
def test_bit_flips_anywhere_are_detected(saved, tmp_path, data):
    _, original, expected = saved
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(damaged) - 1))
        damaged[position] ^= 1 << data.draw(st.integers(0, 7))
    outcome(tmp_path / "checkpoint-000000004.npz", bytes(damaged), expected)


@FUZZ
@given(st.data())
def test_truncations_and_splices_are_detected(saved, tmp_path, data):
    _, original, expected = saved
    start = data.draw(st.integers(0, len(original)))
    end = data.draw(st.integers(start, len(original)))
    inserted = data.draw(st.binary(max_size=64))
    outcome(tmp_path / "checkpoint-000000004.npz", original[:start] + inserted + original[end:],
            expected)


def edited(original, edit):
    """The checkpoint with its arrays or metadata changed by edit(arrays, metadata), and
    the checksum left as it was (a hand edit)."""
    with np.load(io.BytesIO(original), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    metadata = json.loads(arrays["metadata"].tobytes())
    edit(arrays, metadata)
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


METADATA_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 20, 10 ** 20),
                            st.floats(), st.text(max_size=20),
                            st.lists(st.integers(-5, 10 ** 9), max_size=5),
                            st.dictionaries(st.text(max_size=8), st.integers(), max_size=3))


@FUZZ
@given(key=st.sampled_from(["epoch", "step", "world_size", "rng_states", "model", "optimizer",
                            "data_position", "config", "format", "format_version"]),
       value=METADATA_VALUES)
def test_edited_metadata_is_detected(saved, tmp_path, key, value):
    _, original, expected = saved
    data = edited(original, lambda arrays, metadata: metadata.__setitem__(key, value))
    assert outcome(tmp_path / "checkpoint-000000004.npz", data, expected) in ("refused", "loaded")


@FUZZ
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 3)),
       where=st.integers(0, 29))
def test_edited_arrays_and_non_finite_values_are_refused(saved, tmp_path, value, where):
    _, original, expected = saved

    def edit(arrays, metadata):
        weight = arrays["model/fc_mu.weight"].copy()
        weight.reshape(-1)[where % weight.size] = value
        arrays["model/fc_mu.weight"] = weight
    data = edited(original, edit)
    assert outcome(tmp_path / "checkpoint-000000004.npz", data, expected) in ("refused", "loaded")


@FUZZ
@given(pointer=st.binary(max_size=80))
def test_any_latest_pointer_gives_a_checkpoint_or_one_error(saved, tmp_path, pointer):
    path, original, _ = saved
    directory = tmp_path / "run"
    directory.mkdir(exist_ok=True)
    (directory / os.path.basename(path)).write_bytes(original)
    (directory / "latest").write_bytes(pointer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert checkpoint.latest(directory) == str(directory / os.path.basename(path))
        assert checkpoint.load_latest(directory).step == 4


@FUZZ
@given(key=st.sampled_from(["epoch", "step", "world_size", "rng_states", "model", "optimizer",
                            "data_position", "config"]),
       value=METADATA_VALUES, config_key=st.sampled_from(["input_size", "hidden_sizes",
                                                          "latent_dim", "activation", "extra"]))
def test_a_foreign_writer_with_a_valid_checksum_gets_one_error_or_works(saved, tmp_path, key,
                                                                        value, config_key):
    """Malformed metadata under a checksum that matches it (a faulty or foreign writer):
    loading, rebuilding and restoring each succeed or raise CheckpointError."""
    _, original, _ = saved

    def edit(arrays, metadata):
        metadata[key] = value
        if key == "model" and value is None:
            metadata["model"] = {"name": "VariationalAutoencoder",
                                 "config": {config_key: value}}
    data = edited(original, edit)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["checksum"] = np.frombuffer(checkpoint._checksum(arrays).encode(), np.uint8)
    path = tmp_path / "checkpoint-000000004.npz"
    np.savez(path, **arrays)
    try:
        loaded = checkpoint.load(path)
        model = checkpoint.build_model(loaded)
        checkpoint.restore(loaded, model, optim.Adam(model.parameters()))
    except CheckpointError as error:
        assert "\n" not in str(error)
