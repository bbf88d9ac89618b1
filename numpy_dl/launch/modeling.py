"""The models as the launcher uses them: command-line names, constructor arguments, and
one calling convention for all five.

The models differ in what they take and return: the MLP ones take flattened images
(N, C*H*W), the conv ones (N, C, H, W); the VAEs encode to (mu, logvar) and the plain
autoencoders to a code; the conditional VAE also takes labels. `Autoencoding` hides those
differences, so the training loop and the commands are written once for all of them.
"""
import numpy as np

from ..autograd import Tensor, ops
from ..loss import VAELoss
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


class Autoencoding:
    """A model and the shape of its images, with one interface for every kind:
    encode(images, labels) -> (mu, logvar) (logvar None for plain autoencoders),
    decode(z, labels) -> images, forward(images, labels, eps) -> (images, mu, logvar).
    Images are (N, C, H, W) arrays or Tensors going in and Tensors coming out."""

    def __init__(self, model, image_shape):
        self.model, self.image_shape = model, tuple(image_shape)
        self.name = SHORT_NAMES.get(type(model).__name__, type(model).__name__)
        self.variational = hasattr(model, "reparameterize")
        self.conditional = hasattr(model, "num_classes")
        self.flat = not hasattr(model, "in_channels")
        self.latent_dim = model.latent_dim

    def _inputs(self, images):
        data = images.data if isinstance(images, Tensor) else np.asarray(images, np.float32)
        return Tensor(data.reshape(len(data), -1) if self.flat else data)

    def _call(self, method, value, labels):
        return method(value, labels) if self.conditional else method(value)

    def encode(self, images, labels=None):
        encoded = self._call(self.model.encode, self._inputs(images), labels)
        return encoded if self.variational else (encoded, None)

    def decode(self, z, labels=None):
        z = z if isinstance(z, Tensor) else Tensor(np.asarray(z, np.float32))
        return self._call(self.model.decode, z, labels).reshape((len(z.data),) + self.image_shape)

    def forward(self, images, labels=None, eps=None):
        """Reconstructions, mu and logvar. A VAE samples z = mu + sigma * eps with the
        given noise `eps` (the training loop draws it, see train.py), or uses z = mu when
        `eps` is None (evaluation)."""
        mu, logvar = self.encode(images, labels)
        z = mu
        if self.variational and eps is not None:
            z = mu + ops.exp(logvar * 0.5) * Tensor(eps)
        return self.decode(z, labels), mu, logvar

    def require_variational(self, command):
        if not self.variational:
            raise UsageError(f"{command} needs a variational model ({', '.join(VARIATIONAL)}); "
                             f"this checkpoint holds an {self.name} ({type(self.model).__name__}),"
                             f" which has no prior to draw from")


class Objective:
    """The per-sample training loss: VAELoss's negative ELBO for VAEs, its reconstruction
    term alone (summed over each sample's pixels) for plain autoencoders."""

    def __init__(self, recon_loss, beta):
        self.beta = float(beta)
        self._loss = VAELoss(recon_loss, beta, reduction="none")

    def parts(self, recon, target, mu, logvar):
        """(reconstruction, kl) per sample as Tensors; kl is None without logvar."""
        if logvar is None:
            return self._loss.reconstruction(recon, target), None
        return self._loss.parts(recon, target, mu, logvar)

    def total(self, reconstruction, kl):
        return reconstruction if kl is None else reconstruction + kl * self.beta
