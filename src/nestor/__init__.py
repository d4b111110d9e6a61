"""Nestor: confidential, collaborative data analysis on untrusted clouds.

Trust zones (see docs/architecture.md):

- ``nestor.protocol`` and ``nestor.crypto``: pure, shared by every zone;
- ``nestor.client``: runs on each party's own machine;
- ``nestor.enclave``: runs inside an attested TEE;
- ``nestor.host``: runs on the untrusted cloud.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nestor")
except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
