"""The autoencoders of the user guide, a conditional VAE, and a classifier head.

`build(name, **config)` rebuilds any of them from its class name and `model.config`,
which is how a checkpoint alone restores a model, after checking that it fits in memory."""
from .classifier import Classifier
from .conv import ConvAutoencoder, ConvVariationalAutoencoder
from .mlp import Autoencoder, ConditionalVAE, VariationalAutoencoder
from .sizes import check_fits

MODELS = {cls.__name__: cls for cls in (Autoencoder, VariationalAutoencoder, ConvAutoencoder,
                                        ConvVariationalAutoencoder, ConditionalVAE)}


def build(name, copies=1, **config):
    """`MODELS[name](**config)`, after checking that `copies` copies of its parameters fit
    in memory (see sizes.py); ValueError or TypeError for arguments it cannot take."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    check_fits(MODELS[name], config, copies)
    return MODELS[name](**config)


__all__ = ["Autoencoder", "VariationalAutoencoder", "ConvAutoencoder",
           "ConvVariationalAutoencoder", "ConditionalVAE", "Classifier", "MODELS", "build"]
