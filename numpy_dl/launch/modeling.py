"""The models as the launcher uses them: command-line names, constructor arguments, and
one calling convention for all five.

The models differ in what they take and return: the MLP ones take flattened images
(N, C*H*W), the conv ones (N, C, H, W); the VAEs encode to (mu, logvar) and the plain
autoencoders to a code; only the conditional VAE takes labels. `Autoencoding` hides those
differences, so the training loop and the commands are written once for all of them.
The training objective is numpy_dl.loss.VAELoss (the reconstruction term alone for the
plain autoencoders).
"""
import numpy as np

from ..autograd.tensor import input_tensor
from .errors import UsageError

CLASS_NAMES = {"ae": "Autoencoder", "conv-ae": "ConvAutoencoder",
               "vae": "VariationalAutoencoder", "conv-vae": "ConvVariationalAutoencoder",
               "cvae": "ConditionalVAE"}
SHORT_NAMES = {cls: short for short, cls in CLASS_NAMES.items()}
VARIATIONAL = ("vae", "conv-vae", "cvae")


def describe(class_name, arguments):
    """'vae (VariationalAutoencoder, latent_dim=16, ...)' for messages."""
    listed = ", ".join(f"{key}={value}" for key, value in arguments.items())
    return f"{SHORT_NAMES.get(class_name, class_name)} ({class_name}, {listed})"


def model_arguments(config, image_shape, num_classes):
    """(class name, constructor arguments) of the model `config` asks for on images of
    `image_shape` (C, H, W); `num_classes` is needed by the conditional VAE only."""
    channels, height, width = image_shape
    name = config.model
    if name.startswith("conv"):
        if height != width:
            raise UsageError(f"model {name} needs square images; the dataset {config.dataset} "
                             f"has {height}x{width}; use ae or vae")
        return CLASS_NAMES[name], dict(in_channels=channels, base_channels=config.base_channels,
                                       latent_dim=config.latent_dim, image_size=height)
    arguments = dict(input_size=channels * height * width,
                     hidden_sizes=list(config.hidden_sizes), latent_dim=config.latent_dim)
    if name == "cvae":
        if num_classes is None:
            raise UsageError(f"model cvae is conditioned on labels; the dataset "
                             f"{config.dataset} has none; use vae")
        arguments["num_classes"] = num_classes
    return CLASS_NAMES[name], arguments


# Constructor arguments that no option sets, so that a resumed run takes them from its
# checkpoint: the conv models of checkpoints before format version 3 have a ReLU after the
# decoder's FC layer, which numpy_dl.checkpoint records as decoder_fc_activation="relu".
FROM_CHECKPOINT = ("decoder_fc_activation",)


def resumed_arguments(class_name, arguments, saved):
    """`arguments` of the model `class_name` with the checkpoint `saved`'s own values of
    FROM_CHECKPOINT added, when it holds that model: a resumed run goes on training the
    network it saved, the guide's conv decoder or the one of an older numpy_dl."""
    stored = saved.model_config if saved.model_name == class_name else None
    if not isinstance(stored, dict):
        return arguments
    return {**arguments, **{key: stored[key] for key in FROM_CHECKPOINT if key in stored}}


class Autoencoding:
    """A model and the shape of its images, so that images go in and come out as
    (N, C, H, W) whatever the model's own `input_shape` (the MLPs take flat rows), and
    every model encodes to (mu, logvar) (logvar None for plain autoencoders). Labels
    reach conditional models only, so a labelled dataset suits every model:
    encode(images, labels) -> (mu, logvar), decode(z, labels) -> images,
    forward(images, labels, eps) -> (images, mu, logvar). The rest is the models' own
    interface (numpy_dl/models/base.py)."""

    def __init__(self, model, image_shape):
        self.model, self.image_shape = model, tuple(image_shape)
        self.name = SHORT_NAMES.get(type(model).__name__, type(model).__name__)
        self.variational, self.conditional = model.variational, model.conditional
        self.latent_dim = model.latent_dim

    def encode(self, images, labels=None):
        images = input_tensor(images)
        rows = images.reshape((len(images),) + self.model.input_shape[1:])
        encoded = self.model.encode(rows, self._labels(labels))
        return encoded if self.variational else (encoded, None)

    def decode(self, z, labels=None):
        z = input_tensor(z)
        return self.model.decode(z, self._labels(labels)).reshape((len(z),) + self.image_shape)

    def label_cycle(self, count):
        """Labels 0, 1, 2, ... for a conditional model's samples; None for the others."""
        return np.arange(count) % self.model.num_classes if self.conditional else None

    def _labels(self, labels):
        return labels if self.conditional else None

    def forward(self, images, labels=None, eps=None):
        """Reconstructions, mu and logvar. A VAE in training mode samples
        z = mu + sigma * eps with the given noise `eps` (the training loop draws it, see
        train.py); with `eps` None, or in eval mode, z = mu."""
        mu, logvar = self.encode(images, labels)
        z = mu
        if self.variational and eps is not None:
            z = self.model.reparameterize(mu, logvar, eps)
        return self.decode(z, labels), mu, logvar

    def require_variational(self, command):
        if not self.variational:
            raise UsageError(f"{command} needs a variational model ({', '.join(VARIATIONAL)}); "
                             f"this checkpoint holds an {self.name} ({type(self.model).__name__}),"
                             f" which has no prior to draw from")
