"""The fully-connected autoencoders: Autoencoder, VariationalAutoencoder, ConditionalVAE."""
import numpy as np

from .. import nn, random
from ..autograd import Tensor, no_grad, ops
from ..functional import one_hot
from .base import AutoencoderMixin, VariationalMixin, check_device
from .blocks import check_hidden_sizes, check_positive_ints, mlp


class Autoencoder(AutoencoderMixin, nn.Module):
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

    def encode(self, x):
        return self.encoder(self._check(x, (None, self.input_size)))

    def decode(self, z):
        return self.decoder(self._check(z, (None, self.latent_dim), "latent"))

    def forward(self, x):
        return self.decode(self.encode(x))


class VariationalAutoencoder(VariationalMixin, Autoencoder):
    """An MLP encoder to (mu, logvar) through fc_mu and fc_logvar, and the mirrored decoder."""
    condition_size = 0

    def _build(self):
        hidden = self.config["hidden_sizes"]
        inputs = self.input_size + self.condition_size
        self.encoder = mlp([inputs] + hidden, self.config["activation"])
        self.fc_mu = nn.Linear(hidden[-1] if hidden else inputs, self.latent_dim)
        self.fc_logvar = nn.Linear(hidden[-1] if hidden else inputs, self.latent_dim)
        self.decoder = self._decoder(self.latent_dim + self.condition_size)

    def encode(self, x):
        features = self.encoder(self._check(x, (None, self.input_size)))
        return self.fc_mu(features), self.fc_logvar(features)


class ConditionalVAE(VariationalAutoencoder):
    """A VAE conditioned on class labels: the one-hot label joins the input of both the
    encoder and the decoder, so `sample(n, labels=...)` draws samples of chosen classes."""

    def __init__(self, input_size, num_classes, hidden_sizes=(512, 256), latent_dim=64,
                 activation="relu"):
        self.condition_size, = check_positive_ints("ConditionalVAE", num_classes=num_classes)
        super().__init__(input_size, hidden_sizes, latent_dim, activation)
        self.num_classes = self.condition_size
        self.config["num_classes"] = self.num_classes

    def _with_labels(self, x, labels):
        codes = one_hot(getattr(labels, "data", labels), self.num_classes)
        if codes.shape[0] != x.shape[0]:
            raise ValueError(f"ConditionalVAE: got {codes.shape[0]} labels for {x.shape[0]} samples")
        return ops.cat([x, codes], dim=1)

    def encode(self, x, labels):
        x = self._check(x, (None, self.input_size))
        features = self.encoder(self._with_labels(x, labels))
        return self.fc_mu(features), self.fc_logvar(features)

    def decode(self, z, labels):
        z = self._check(z, (None, self.latent_dim), "latent")
        return self.decoder(self._with_labels(z, labels))

    def forward(self, x, labels):
        mu, logvar = self.encode(x, labels)
        return self.decode(self.reparameterize(mu, logvar), labels), mu, logvar

    def sample(self, num_samples, labels=None, device="cpu"):
        """Samples of the given labels (one per sample, or one label for all); without
        labels, the classes in turn: 0, 1, 2, ..."""
        check_device(device)
        count = int(num_samples)
        if labels is None:
            labels = np.arange(count) % self.num_classes
        labels = np.asarray(getattr(labels, "data", labels)).reshape(-1)
        if labels.size not in (1, count):
            raise ValueError(f"ConditionalVAE.sample: got {labels.size} labels for {count} "
                             f"samples; give one label per sample or a single label for all")
        labels = np.broadcast_to(labels, (count,))
        z = random.generator().standard_normal((count, self.latent_dim), dtype=np.float32)
        with no_grad():
            return self.decode(Tensor(z), labels)
