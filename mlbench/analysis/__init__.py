"""Analysis: paired statistics, reports."""
