"""The convolutional autoencoders: stride-2 convolutions down, transposed ones back up."""
from .. import nn
from .base import AutoencoderBase, VariationalMixin
from .blocks import check_positive_ints, conv_decoder, conv_encoder, conv_sizes


class ConvAutoencoder(AutoencoderBase):
    """[Conv(3, stride 2) -> ReLU] x num_layers -> Flatten -> FC -> latent, and back:
    FC -> ReLU -> reshape -> [ConvTranspose -> ReLU]* -> ConvTranspose -> Sigmoid.
    Channels start at base_channels and double per layer; any image_size works."""

    def __init__(self, in_channels=1, base_channels=32, latent_dim=128, image_size=28,
                 num_layers=3):
        super().__init__()
        in_channels, base_channels, latent_dim, image_size, num_layers = check_positive_ints(
            type(self).__name__, in_channels=in_channels, base_channels=base_channels,
            latent_dim=latent_dim, image_size=image_size, num_layers=num_layers)
        self.config = dict(in_channels=in_channels, base_channels=base_channels,
                           latent_dim=latent_dim, image_size=image_size, num_layers=num_layers)
        self.in_channels, self.image_size, self.latent_dim = in_channels, image_size, latent_dim
        self.input_shape = (None, in_channels, image_size, image_size)
        self.channels = [base_channels * 2 ** i for i in range(num_layers)]
        self.features = self.channels[-1] * conv_sizes(image_size, num_layers)[-1] ** 2
        self._build()
        self.decoder = conv_decoder(latent_dim, in_channels, self.channels, image_size)

    def _build(self):
        self.encoder = nn.Sequential(*conv_encoder(self.in_channels, self.channels),
                                     nn.Linear(self.features, self.latent_dim))


class ConvVariationalAutoencoder(VariationalMixin, ConvAutoencoder):
    """ConvAutoencoder whose flattened features feed fc_mu and fc_logvar."""

    def _build(self):
        self.encoder = conv_encoder(self.in_channels, self.channels)
        self.fc_mu = nn.Linear(self.features, self.latent_dim)
        self.fc_logvar = nn.Linear(self.features, self.latent_dim)
