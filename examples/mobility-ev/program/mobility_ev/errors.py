"""The exception the enclave reports as "rejected its inputs"."""

from __future__ import annotations


class InvalidInput(ValueError):
    """An input dataset or parameter does not fit the program.

    The program host recognises the class by name. Messages name datasets,
    columns, parameters and the rule broken, never values from the data: they
    leave the enclave in the job's status."""
