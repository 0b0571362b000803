"""mlbench's version and the summary.json schema version (read by every writer of results)."""

__version__ = "0.1.0"
SCHEMA_VERSION = 1
