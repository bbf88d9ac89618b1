"""Writes the format-version-2 conv checkpoints that tests/test_checkpoint.py loads, with
the numpy_dl that wrote format 2 (its conv decoders had FC -> ReLU -> reshape), and what
that numpy_dl computed from them:

    format2-conv-ae.npz, format2-conv-vae.npz   checkpoints as checkpoint.save wrote them
                                                (a model after one Adam step, its optimizer)
    format2-expected.npz                        inputs x and latents z, and each model's
                                                outputs on them in eval mode

Run it with numpy_dl of commit 5b5da42 (the last of format 2), from the repository root:

    mkdir /tmp/numpy_dl_v2 && git archive 5b5da42 numpy_dl | tar -x -C /tmp/numpy_dl_v2
    PYTHONPATH=/tmp/numpy_dl_v2 python tests/data/make_format2_checkpoints.py tests/data
"""
import os
import shutil
import sys
import tempfile

import numpy as np

import numpy_dl as ndl
from numpy_dl import checkpoint
from numpy_dl.loss import MSELoss, VAELoss
from numpy_dl.models import ConvAutoencoder, ConvVariationalAutoencoder
from numpy_dl.optim import Adam

MODELS = {
    "conv-ae": lambda: ConvAutoencoder(in_channels=2, base_channels=3, latent_dim=4,
                                       image_size=9, num_layers=2),
    "conv-vae": lambda: ConvVariationalAutoencoder(in_channels=1, base_channels=2,
                                                   latent_dim=3, image_size=8),
}


def inputs(model):
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, (5,) + model.input_shape[1:]).astype(np.float32)
    z = rng.normal(0, 2, (5, model.latent_dim)).astype(np.float32)
    return x, z


def main(out):
    if checkpoint.FORMAT_VERSION != 2:
        sys.exit(f"this is numpy_dl with checkpoint format {checkpoint.FORMAT_VERSION}; "
                 f"run it with the numpy_dl of format 2 (see the docstring)")
    expected = {}
    for name, make in MODELS.items():
        ndl.manual_seed(11)
        model = make()
        x, z = inputs(model)
        optimizer = Adam(model.parameters(), lr=0.01)
        model.train()
        if model.variational:
            recon, mu, logvar = model(ndl.tensor(x))
            loss = VAELoss("bce")(recon, ndl.tensor(x), mu, logvar)
        else:
            loss = MSELoss()(model(ndl.tensor(x)), ndl.tensor(x))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.eval()
        with ndl.no_grad():
            out_x = model(ndl.tensor(x))
            outputs = out_x if model.variational else (out_x,)
            for key, value in zip(("recon", "mu", "logvar"), outputs):
                expected[f"{name}/{key}"] = value.data
            expected[f"{name}/decoded"] = model.decode(ndl.tensor(z)).data
        expected[f"{name}/x"], expected[f"{name}/z"] = x, z
        with tempfile.TemporaryDirectory() as directory:
            path = checkpoint.save(directory, model, optimizer, epoch=1, step=1)
            shutil.copyfile(path, os.path.join(out, f"format2-{name}.npz"))
    np.savez(os.path.join(out, "format2-expected.npz"), **expected)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
