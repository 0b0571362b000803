"""Datasets: embedded (scikit-learn), synthetic with planted ground truth, MNIST/FashionMNIST/CIFAR-10 from their files."""

from mlbench.data.base import SPLITS, DataBundle, DataMeta, Dataset, stratified_splits
from mlbench.data.embedded import BreastCancer, Digits, NpzDataset, Wine
from mlbench.data.image_folder import ImageFolder
from mlbench.data.synthetic import Synthetic
from mlbench.data.table import Table
from mlbench.data.vision import TorchvisionDataset, VisionDataset

__all__ = ["SPLITS", "DataBundle", "DataMeta", "Dataset", "stratified_splits", "Digits",
           "BreastCancer", "Wine", "NpzDataset", "ImageFolder", "Synthetic", "Table", "TorchvisionDataset", "VisionDataset"]
