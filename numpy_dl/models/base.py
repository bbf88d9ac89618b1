"""What every autoencoder shares: its constructor config, input checks, and for VAEs
the reparameterisation, forward pass and sampling from the prior."""
import numpy as np

from .. import random
from ..autograd import Tensor, no_grad, ops


class AutoencoderMixin:
    """Shape checks that name the model, the expected shape and the shape received."""

    def _check(self, x, expected, what="input"):
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float32))
        ok = x.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape))
        if not ok:
            shape = "(" + ", ".join("N" if e is None else str(e) for e in expected) + ")"
            raise ValueError(f"{type(self).__name__}: expected {what} of shape {shape}, "
                             f"got {tuple(x.shape)}")
        return x


class VariationalMixin:
    """forward, reparameterize and sample for any VAE with encode -> (mu, logvar) and decode."""

    def reparameterize(self, mu, logvar):
        """z = mu + sigma * eps with eps ~ N(0, I) in training; z = mu in eval mode, so that
        reconstructions, features and interpolations of a trained model are deterministic."""
        if not self.training:
            return mu
        eps = random.generator().standard_normal(mu.shape, dtype=np.float32).astype(mu.dtype)
        return mu + ops.exp(logvar * 0.5) * eps

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar

    def sample(self, num_samples, device="cpu"):
        """Decode `num_samples` draws from the prior N(0, I); numpy_dl runs on the CPU only."""
        check_device(device)
        z = random.generator().standard_normal((int(num_samples), self.latent_dim),
                                               dtype=np.float32)
        with no_grad():
            return self.decode(Tensor(z))


def check_device(device):
    if str(device) != "cpu":
        raise ValueError(f"numpy_dl runs on the CPU only: device must be 'cpu', got {device!r}")
