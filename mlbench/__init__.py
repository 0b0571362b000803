"""mlbench: evaluation and compression benchmarks for the operational ML lifecycle.

The Python API (``mlbench.run``, ``mlbench.compare``, ``mlbench.export``, ``mlbench.Summary``)
lives in :mod:`mlbench.api`; it is loaded on first use, so ``import mlbench`` stays light.
"""

from mlbench.version import SCHEMA_VERSION, __version__

__all__ = ["SCHEMA_VERSION", "__version__", "run", "compare", "export", "compose", "Summary"]


def __getattr__(name: str):
    if name in ("run", "compare", "export", "compose", "Summary", "VariantResult", "Interval"):
        from mlbench import api
        return getattr(api, name)
    raise AttributeError(f"module 'mlbench' has no attribute {name!r}")
