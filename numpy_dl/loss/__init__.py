"""Loss functions as callables `criterion(pred, target)`, with PyTorch's `reduction`."""
from .losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, KLDivergenceLoss, Loss,
                     MSELoss, NLLLoss, VAELoss)

__all__ = ["Loss", "MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss",
           "NLLLoss", "KLDivergenceLoss", "VAELoss"]
