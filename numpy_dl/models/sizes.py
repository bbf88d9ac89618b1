"""How many parameters a model would have, known from its constructor arguments alone.

A checkpoint or a config file names a model by its class and arguments; a damaged or
careless one may ask for `latent_dim=10**9` or a thousand-layer stack. `check_fits`
refuses such a request with one line before anything is allocated. The counts are upper
bounds (each layer counted as if its bias had a row of its own as well), so a model that
fits is never refused; tests/test_models.py checks them against built models.
"""
import inspect

from .. import runtime
from .blocks import check_hidden_sizes, check_positive_ints, conv_sizes

MAX_LAYERS = 1000
FLOAT32_BYTES = 4


def parameter_bound(cls, config):
    """An upper bound on the parameters of `cls(**config)`; ValueError or TypeError for
    arguments the constructor would refuse."""
    arguments = inspect.signature(cls).bind(**config)
    arguments.apply_defaults()
    values = dict(arguments.arguments)
    name = cls.__name__
    copies = 3 if cls.variational else 2  # encoder, decoder (and the second latent head)
    if "image_size" in values:
        in_channels, base, latent, size, layers = check_positive_ints(
            name, in_channels=values["in_channels"], base_channels=values["base_channels"],
            latent_dim=values["latent_dim"], image_size=values["image_size"],
            num_layers=values["num_layers"])
        _check_layers(name, layers)
        channels = [in_channels] + [base * 2 ** i for i in range(layers)]
        convolutions = sum(9 * (a + 1) * (b + 1) for a, b in zip(channels, channels[1:]))
        features = channels[-1] * conv_sizes(size, layers)[-1] ** 2
        return 2 * convolutions + copies * (features + 1) * (latent + 1)
    hidden = check_hidden_sizes(values["hidden_sizes"], name)
    _check_layers(name, len(hidden))
    extra = {"num_classes": values["num_classes"]} if "num_classes" in values else {}
    inputs, latent, *classes = check_positive_ints(
        name, input_size=values["input_size"], latent_dim=values["latent_dim"], **extra)
    sizes = [inputs + sum(classes)] + hidden + [latent + sum(classes)]
    return copies * sum((a + 1) * (b + 1) for a, b in zip(sizes, sizes[1:]))


def _check_layers(name, count):
    if count > MAX_LAYERS:
        raise ValueError(f"{name}: {count} layers asked for; at most {MAX_LAYERS} are supported")


def check_fits(cls, config, copies=1):
    """ValueError, naming the size asked for, when `copies` float32 copies of the model's
    parameters (training keeps about five: values, gradients, the optimizer's flat buffer
    and Adam's two moments) would not fit in this machine's memory."""
    needed = parameter_bound(cls, config) * FLOAT32_BYTES * copies
    memory = runtime.physical_memory()
    if memory is not None and needed > memory:
        raise ValueError(f"{cls.__name__}({_listed(config)}) would need up to "
                         f"{needed / 2 ** 30:,.1f} GiB for its parameters"
                         f"{' and training state' if copies > 1 else ''}; this machine has "
                         f"{memory / 2 ** 30:,.1f} GiB")


def _listed(config):
    text = ", ".join(f"{key}={value!r}" for key, value in config.items())
    return text if len(text) <= 120 else text[:117] + "..."
