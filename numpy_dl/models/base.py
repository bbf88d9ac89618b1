"""The interface every autoencoder has, and what a variational one adds.

Every model has `encode(x, labels=None)`, `decode(z, labels=None)` and
`forward(x, labels=None)`, and says what it is: `variational`, `conditional`,
`input_shape` (None for the batch), `latent_dim` and `config` (its constructor arguments,
enough to rebuild it). Labels are for conditional models only, where they are required;
the others refuse them. A plain autoencoder encodes to a code and `forward` returns the
reconstruction; a VAE encodes to (mu, logvar) and `forward` returns
(reconstruction, mu, logvar). So code written against this interface (the launcher,
the examples) handles every model without asking which one it is.
"""
import numpy as np

from .. import nn, random
from ..autograd import Tensor, no_grad, ops
from ..autograd.tensor import check_device, input_tensor
from ..functional import one_hot


class AutoencoderBase(nn.Module):
    """encode/decode/forward over `self.encoder` and `self.decoder`, which a subclass
    builds, with shape checks that name the model, the expected and the received shape."""
    variational = False
    conditional = False
    num_classes = 0  # label classes of a conditional model

    def encode(self, x, labels=None):
        """The latent code of each sample of the batch `x`; `labels` (one per sample) for a
        conditional model only."""
        return self.encoder(self._conditioned(self._check(x, self.input_shape), labels))

    def decode(self, z, labels=None):
        """The reconstruction from each latent of the batch `z`, in [0, 1]; `labels` for a
        conditional model only."""
        z = self._check(z, (None, self.latent_dim), "latent")
        return self.decoder(self._conditioned(z, labels))

    def forward(self, x, labels=None):
        """`decode(encode(x))`: the reconstruction of `x`."""
        return self.decode(self.encode(x, labels), labels)

    def _check(self, x, expected, what="input"):
        x = input_tensor(x)
        ok = x.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape))
        if not ok:
            shape = "(" + ", ".join("N" if e is None else str(e) for e in expected) + ")"
            raise ValueError(f"{type(self).__name__}: expected {what} of shape {shape}, "
                             f"got {tuple(x.shape)}")
        return x

    def _conditioned(self, x, labels):
        """`x` as the encoder or decoder takes it: joined by the labels' one-hot codes in a
        conditional model, as it is in the others."""
        name = type(self).__name__
        if not self.conditional:
            if labels is not None:
                raise ValueError(f"{name} is not conditional: it takes no labels")
            return x
        if labels is None:
            raise ValueError(f"{name} is conditioned on labels: pass one label per sample")
        codes = one_hot(getattr(labels, "data", labels), self.num_classes)
        if codes.shape[0] != x.shape[0]:
            raise ValueError(f"{name}: got {codes.shape[0]} labels for {x.shape[0]} samples")
        return ops.cat([x, codes], dim=1)


class VariationalMixin:
    """What a VAE adds to AutoencoderBase: encode to (mu, logvar) through `fc_mu` and
    `fc_logvar`, the reparameterisation, and sampling from the prior N(0, I)."""
    variational = True

    def encode(self, x, labels=None):
        """(mu, logvar) of each sample of the batch `x`: the mean and log-variance of its
        Gaussian posterior over the latents."""
        features = super().encode(x, labels)
        return self.fc_mu(features), self.fc_logvar(features)

    def reparameterize(self, mu, logvar, eps=None):
        """z = mu + sigma * eps in training, with eps ~ N(0, I) from numpy_dl's generator
        unless given; z = mu in eval mode, so that reconstructions, features and
        interpolations of a trained model are deterministic."""
        if not self.training:
            return mu
        if eps is None:
            eps = random.generator().standard_normal(mu.shape, dtype=np.float32)
        return mu + ops.exp(logvar * 0.5) * np.asarray(eps, dtype=mu.dtype)

    def forward(self, x, labels=None):
        """(reconstruction, mu, logvar): `x` encoded, a latent drawn by `reparameterize`,
        and that latent decoded."""
        mu, logvar = self.encode(x, labels)
        return self.decode(self.reparameterize(mu, logvar), labels), mu, logvar

    def prior(self, num_samples, generator=None):
        """`num_samples` latents drawn from the prior N(0, I), float32, from `generator`
        (a np.random.Generator) or numpy_dl's own."""
        generator = random.generator() if generator is None else generator
        return generator.standard_normal((int(num_samples), self.latent_dim), dtype=np.float32)

    def sample(self, num_samples, device="cpu"):
        """Decode `num_samples` draws from the prior; numpy_dl runs on the CPU only."""
        return self._decode_prior(num_samples, None, device)

    def _decode_prior(self, num_samples, labels, device):
        check_device(device)
        z = self.prior(num_samples)
        with no_grad():
            return self.decode(Tensor(z), labels)
