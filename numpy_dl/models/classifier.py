"""A classification head on a (pretrained) encoder, for the guide's transfer learning."""
from .. import nn
from ..autograd import Tensor, no_grad


class Classifier(nn.Module):
    """Linear(feature_dim, num_classes) on top of `encoder`.

    With freeze_encoder=True the encoder's parameters stop requiring gradients and its
    forward pass builds no graph, so only the head trains."""

    def __init__(self, encoder, num_classes, feature_dim, freeze_encoder=False):
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            encoder.requires_grad_(False)

    def forward(self, x):
        if self.freeze_encoder:
            with no_grad():
                features = self.encoder(x)
            features = Tensor(features.data)
        else:
            features = self.encoder(x)
        return self.classifier(features)
