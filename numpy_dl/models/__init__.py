"""The autoencoders of the user guide, a conditional VAE, and a classifier head.

`build(name, **config)` rebuilds any of them from its class name and `model.config`,
which is how a checkpoint alone restores a model."""
from .classifier import Classifier
from .conv import ConvAutoencoder, ConvVariationalAutoencoder
from .mlp import Autoencoder, ConditionalVAE, VariationalAutoencoder

MODELS = {cls.__name__: cls for cls in (Autoencoder, VariationalAutoencoder, ConvAutoencoder,
                                        ConvVariationalAutoencoder, ConditionalVAE)}


def build(name, **config):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](**config)


__all__ = ["Autoencoder", "VariationalAutoencoder", "ConvAutoencoder",
           "ConvVariationalAutoencoder", "ConditionalVAE", "Classifier", "MODELS", "build"]
