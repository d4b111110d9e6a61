"""What the enclave tests share: the sandbox backends a test runs under."""

from __future__ import annotations

import pytest
from sandbox_probe import LANDLOCK_PROBLEM, working_bwrap


@pytest.fixture(params=["landlock", "bwrap"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each sandbox backend in turn; one that cannot run here is skipped
    with the reason."""
    name = str(request.param)
    if name == "landlock" and LANDLOCK_PROBLEM is not None:
        pytest.skip(f"Landlock backend unavailable: {LANDLOCK_PROBLEM}")
    if name == "bwrap" and working_bwrap() is None:
        pytest.skip("bubblewrap is missing or cannot create namespaces here")
    return name
