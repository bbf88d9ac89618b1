"""Datasets, the DataLoader and the DistributedSampler."""
from . import datasets
from .dataset import Dataset, TensorDataset
from .loader import DataLoader
from .sampler import DistributedSampler

__all__ = ["Dataset", "TensorDataset", "DataLoader", "DistributedSampler", "datasets"]
