"""mlbench: evaluation and compression benchmarks for the operational ML lifecycle."""

__version__ = "0.1.0"
SCHEMA_VERSION = 1
