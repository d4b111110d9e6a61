"""Pooled descriptive statistics by group, with small groups suppressed."""
