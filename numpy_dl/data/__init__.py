"""Data: the Dataset protocol and TensorDataset (tensor_dataset.py), the DataLoader
(loader.py), the DistributedSampler (sampler.py), and the image sources: built-in
digits, MNIST, arrays from files, synthetic images (datasets.py)."""
from . import datasets
from .tensor_dataset import Dataset, TensorDataset
from .loader import DataLoader
from .sampler import DistributedSampler

__all__ = ["Dataset", "TensorDataset", "DataLoader", "DistributedSampler", "datasets"]
