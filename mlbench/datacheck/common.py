"""What several data checks share: the proxy model, dataset indices of split positions, the
Wilson interval and nearest-neighbour distances."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import stats as sps
from sklearn.linear_model import LogisticRegression

from mlbench.datacheck.base import CheckContext

HEAD_ROWS = 20  # label issues kept in summary.json; the full table is datacheck/label_issues.csv


def proxy_model(seed: int) -> Any:
    return LogisticRegression(max_iter=1000, C=1.0)


def dataset_ids(ctx: CheckContext, split: str, positions: Sequence[int] | np.ndarray) -> list[int]:
    return ctx.data.index[split][torch.as_tensor(np.asarray(positions, dtype=np.int64))].tolist()


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """The proportion k/n with its Wilson score interval (scipy's ``binomtest``)."""
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def nearest_distances(q: torch.Tensor, ref: torch.Tensor, chunk_bytes: int = 64 << 20,
                      exclude_self: bool = False, k: int = 1) -> torch.Tensor:
    """Euclidean distance from each row of ``q`` to its ``k``-th nearest row of ``ref``, in
    chunks of queries sized so that a (chunk × len(ref)) block stays within ``chunk_bytes``.
    With ``exclude_self``, ``q`` is the first rows of ``ref`` and each skips itself."""
    rows = max(1, chunk_bytes // (4 * max(len(ref), 1)))
    out = []
    for i in range(0, len(q), rows):
        block = torch.cdist(q[i:i + rows], ref)
        if exclude_self:
            idx = torch.arange(i, min(i + rows, len(q)))
            block[idx - i, idx] = math.inf
        out.append(block.min(1).values if k == 1 else block.topk(k, dim=1, largest=False).values[:, -1])
    return torch.cat(out) if out else torch.empty(0)
