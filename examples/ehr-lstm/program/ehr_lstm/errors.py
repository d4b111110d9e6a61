"""The one exception the enclave reports as a rejection of the inputs."""

from __future__ import annotations


class InvalidInput(ValueError):
    """The inputs or parameters do not fit this program. Messages name datasets,
    columns and parameters, never values: they leave the enclave in the job's
    status."""
