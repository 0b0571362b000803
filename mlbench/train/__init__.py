"""Training: the fit loop and the baseline cache."""

from mlbench.train.cache import BaselineCache, content_hash, load_weights, save_weights
from mlbench.train.fit import FitResult, fit

__all__ = ["fit", "FitResult", "BaselineCache", "content_hash", "save_weights", "load_weights"]
