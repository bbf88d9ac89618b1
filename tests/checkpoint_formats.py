"""Checkpoints as the numpy_dl of an older format version wrote them, made from ones this
numpy_dl writes (tests/data holds files the old numpy_dl wrote itself)."""
import json

import numpy as np

from numpy_dl import checkpoint

CONV_MODELS = ("ConvAutoencoder", "ConvVariationalAutoencoder")


def old_decoder_names(state):
    """A conv model's state_dict names under the decoder of format versions 1 and 2,
    FC -> ReLU -> reshape -> ...: every decoder layer after the FC one place further on."""
    def renamed(name):
        parts = name.split(".")
        if parts[0] == "decoder" and int(parts[1]) >= 1:
            parts[1] = str(int(parts[1]) + 1)
        return ".".join(parts)
    return {renamed(name): value for name, value in state.items()}


def rewrite_as_version(path, version):
    """Rewrite the checkpoint at `path`, written by this numpy_dl, as format `version` (1 or
    2) would have held the same weights: a conv model with the decoder of those versions
    (its names shifted, no decoder_fc_activation in its config), version 1's checksum over
    the arrays alone in the metadata, version 2's over everything in `checksum`."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    metadata = json.loads(arrays.pop("metadata").tobytes())
    arrays.pop("checksum")
    model = metadata["model"]
    if model["name"] in CONV_MODELS:
        assert "decoder_fc_activation" not in model["config"], "already an old decoder"
        models = {key[len("model/"):]: value for key, value in arrays.items()
                  if key.startswith("model/")}
        arrays = {key: value for key, value in arrays.items() if not key.startswith("model/")}
        arrays.update((f"model/{name}", value)
                      for name, value in old_decoder_names(models).items())
    metadata["format_version"] = version
    if version == 1:
        metadata["arrays_sha256"] = checkpoint._checksum(arrays)
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), np.uint8)
    if version >= 2:
        arrays["checksum"] = np.frombuffer(checkpoint._checksum(arrays).encode(), np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **arrays)
