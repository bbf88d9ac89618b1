"""The fully-connected autoencoders: Autoencoder, VariationalAutoencoder, ConditionalVAE."""
import numpy as np

from .. import nn
from .base import AutoencoderBase, VariationalMixin
from .blocks import check_hidden_sizes, check_positive_ints, mlp


class Autoencoder(AutoencoderBase):
    """input -> [Linear -> activation]* -> latent -> [Linear -> activation]* -> Sigmoid."""

    def __init__(self, input_size, hidden_sizes=(512, 256), latent_dim=64, activation="relu"):
        super().__init__()
        name = type(self).__name__
        input_size, latent_dim = check_positive_ints(name, input_size=input_size,
                                                     latent_dim=latent_dim)
        self.config = dict(input_size=input_size,
                           hidden_sizes=check_hidden_sizes(hidden_sizes, name),
                           latent_dim=latent_dim, activation=activation)
        self.input_size, self.latent_dim = int(input_size), int(latent_dim)
        self.input_shape = (None, self.input_size)
        self._build()

    def _build(self):
        hidden = self.config["hidden_sizes"]
        self.encoder = mlp([self.input_size] + hidden + [self.latent_dim],
                           self.config["activation"], last_activation=False)
        self.decoder = self._decoder(self.latent_dim)

    def _decoder(self, inputs):
        """The encoder's mirror, ending in a Sigmoid so outputs lie in [0, 1]."""
        sizes = [inputs] + self.config["hidden_sizes"][::-1] + [self.input_size]
        return nn.Sequential(*mlp(sizes, self.config["activation"], last_activation=False),
                             nn.Sigmoid())


class VariationalAutoencoder(VariationalMixin, Autoencoder):
    """An MLP encoder to (mu, logvar) through fc_mu and fc_logvar, and the mirrored decoder."""

    def _build(self):
        hidden = self.config["hidden_sizes"]
        inputs = self.input_size + self.num_classes
        self.encoder = mlp([inputs] + hidden, self.config["activation"])
        self.fc_mu = nn.Linear(hidden[-1] if hidden else inputs, self.latent_dim)
        self.fc_logvar = nn.Linear(hidden[-1] if hidden else inputs, self.latent_dim)
        self.decoder = self._decoder(self.latent_dim + self.num_classes)


class ConditionalVAE(VariationalAutoencoder):
    """A VAE conditioned on class labels: the one-hot label joins the input of both the
    encoder and the decoder, so `sample(n, labels=...)` draws samples of chosen classes."""
    conditional = True

    def __init__(self, input_size, num_classes, hidden_sizes=(512, 256), latent_dim=64,
                 activation="relu"):
        self.num_classes, = check_positive_ints("ConditionalVAE", num_classes=num_classes)
        super().__init__(input_size, hidden_sizes, latent_dim, activation)
        self.config["num_classes"] = self.num_classes

    def sample(self, num_samples, labels=None, device="cpu"):
        """Samples of the given labels (one per sample, or one label for all); without
        labels, the classes in turn: 0, 1, 2, ..."""
        count = int(num_samples)
        if labels is None:
            labels = np.arange(count) % self.num_classes
        labels = np.asarray(getattr(labels, "data", labels)).reshape(-1)
        if labels.size not in (1, count):
            raise ValueError(f"ConditionalVAE.sample: got {labels.size} labels for {count} "
                             f"samples; give one label per sample or a single label for all")
        return self._decode_prior(count, np.broadcast_to(labels, (count,)), device)
