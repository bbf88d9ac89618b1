"""Building blocks the models share: activations by name, MLP stacks, and the stride-2
convolution stacks whose transposed mirror reproduces every spatial size exactly."""
import numbers

from .. import nn

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def mlp(sizes, activation_name, last_activation=True):
    """Linear layers through `sizes`, each followed by the activation (the last optional)."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if last_activation or i < len(sizes) - 2:
            layers.append(activation(activation_name))
    return nn.Sequential(*layers) if layers else nn.Identity()


def _is_positive_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def check_positive_ints(model, **values):
    """The values as ints, or one ValueError naming the model and each bad argument."""
    bad = [f"{name}={value!r}" for name, value in values.items() if not _is_positive_int(value)]
    if bad:
        raise ValueError(f"{model}: {', '.join(bad)}: expected positive integers")
    return [int(value) for value in values.values()]


def check_hidden_sizes(hidden_sizes, model="model"):
    try:
        sizes = list(hidden_sizes)
    except TypeError:
        sizes = None
    if sizes is None or isinstance(hidden_sizes, str) or not all(map(_is_positive_int, sizes)):
        raise ValueError(f"{model}: hidden_sizes must be a list of positive integers, "
                         f"got {hidden_sizes!r}")
    return [int(h) for h in sizes]


def conv_sizes(image_size, num_layers):
    """Spatial size after each stride-2, kernel-3, padding-1 convolution: ceil(s / 2)."""
    sizes = [int(image_size)]
    for _ in range(num_layers):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def conv_encoder(in_channels, channels):
    """Stride-2 convolutions that halve the image and double the channels, then Flatten."""
    layers = []
    for fan_in, fan_out in zip([in_channels] + channels[:-1], channels):
        layers += [nn.Conv2d(fan_in, fan_out, 3, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten())


def conv_decoder(latent_dim, in_channels, channels, image_size, fc_activation=None):
    """The guide's decoder: Latent -> FC -> Reshape -> [ConvTranspose -> ReLU]* -> Output,
    the Output being a last transposed convolution back to `in_channels` and a Sigmoid.

    A stride-2 transposed convolution maps size s to 2s - 1 + output_padding; choosing
    output_padding = target - (2s - 1) (0 or 1) lands on each encoder size exactly.

    `fc_activation` (an ACTIVATIONS name) puts that activation between the FC layer and
    the reshape, which the guide's network does not have: it rebuilds the decoder of
    checkpoints before format version 3, which had a ReLU there (and so their parameter
    names: the transposed convolutions at decoder.3, .5, ... instead of .2, .4, ...)."""
    sizes = conv_sizes(image_size, len(channels))
    layers = [nn.Linear(latent_dim, channels[-1] * sizes[-1] ** 2)]
    if fc_activation is not None:
        layers.append(activation(fc_activation))
    layers.append(nn.Unflatten(1, (channels[-1], sizes[-1], sizes[-1])))
    outputs = list(reversed(channels[:-1])) + [in_channels]
    for i, (fan_in, fan_out) in enumerate(zip(reversed(channels), outputs)):
        source, target = sizes[-1 - i], sizes[-2 - i]
        layers.append(nn.ConvTranspose2d(fan_in, fan_out, 3, stride=2, padding=1,
                                         output_padding=target - (2 * source - 1)))
        layers.append(nn.ReLU() if i < len(channels) - 1 else nn.Sigmoid())
    return nn.Sequential(*layers)
