"""The convolutional autoencoders: stride-2 convolutions down, transposed ones back up.

Both follow the user guide's diagram:
    Input -> [Conv -> ReLU]* -> Flatten -> FC -> Latent
    Latent -> FC -> Reshape -> [ConvTranspose -> ReLU]* -> Output
where the Output is a last transposed convolution back to the input's channels and a
Sigmoid, so outputs lie in [0, 1]. Checkpoints before format version 3 hold conv models
with a ReLU between the decoder's FC layer and the reshape; numpy_dl.checkpoint rebuilds
them with `decoder_fc_activation="relu"` (see blocks.conv_decoder)."""
from .. import nn
from .base import AutoencoderBase, VariationalMixin
from .blocks import ACTIVATIONS, check_positive_ints, conv_decoder, conv_encoder, conv_sizes


class ConvAutoencoder(AutoencoderBase):
    """[Conv(3, stride 2) -> ReLU] x num_layers -> Flatten -> FC -> latent, and back:
    FC -> reshape -> [ConvTranspose -> ReLU]* -> ConvTranspose -> Sigmoid, the guide's
    network. Channels start at base_channels and double per layer; any image_size works.

    `decoder_fc_activation` is for models of checkpoints before format version 3 only: an
    activation name ("relu" for those) put between the decoder's FC layer and the reshape.
    None, the default, is the guide's network; `config` names it only when it is set."""

    def __init__(self, in_channels=1, base_channels=32, latent_dim=128, image_size=28,
                 num_layers=3, decoder_fc_activation=None):
        super().__init__()
        name = type(self).__name__
        in_channels, base_channels, latent_dim, image_size, num_layers = check_positive_ints(
            name, in_channels=in_channels, base_channels=base_channels,
            latent_dim=latent_dim, image_size=image_size, num_layers=num_layers)
        if decoder_fc_activation is not None and not (
                isinstance(decoder_fc_activation, str) and decoder_fc_activation in ACTIVATIONS):
            raise ValueError(f"{name}: decoder_fc_activation must be None (the guide's "
                             f"decoder) or one of {sorted(ACTIVATIONS)}, got "
                             f"{decoder_fc_activation!r}")
        self.config = dict(in_channels=in_channels, base_channels=base_channels,
                           latent_dim=latent_dim, image_size=image_size, num_layers=num_layers)
        if decoder_fc_activation is not None:
            self.config["decoder_fc_activation"] = decoder_fc_activation
        self.in_channels, self.image_size, self.latent_dim = in_channels, image_size, latent_dim
        self.input_shape = (None, in_channels, image_size, image_size)
        self.channels = [base_channels * 2 ** i for i in range(num_layers)]
        self.features = self.channels[-1] * conv_sizes(image_size, num_layers)[-1] ** 2
        self._build()
        self.decoder = conv_decoder(latent_dim, in_channels, self.channels, image_size,
                                    fc_activation=decoder_fc_activation)

    def _build(self):
        self.encoder = nn.Sequential(*conv_encoder(self.in_channels, self.channels),
                                     nn.Linear(self.features, self.latent_dim))


class ConvVariationalAutoencoder(VariationalMixin, ConvAutoencoder):
    """ConvAutoencoder whose flattened features feed fc_mu and fc_logvar; the same
    decoder (z -> FC -> reshape -> [ConvTranspose -> ReLU]* -> ConvTranspose -> Sigmoid)."""

    def _build(self):
        self.encoder = conv_encoder(self.in_channels, self.channels)
        self.fc_mu = nn.Linear(self.features, self.latent_dim)
        self.fc_logvar = nn.Linear(self.features, self.latent_dim)
