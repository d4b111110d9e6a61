"""The enclave's per-job phase line (nestor.enclave.service.format_phases)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from nestor.enclave.service import format_phases

NAME = st.from_regex(r"[a-z][a-z_]{0,20}", fullmatch=True)
SECONDS = st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False)


@given(st.dictionaries(NAME, SECONDS, max_size=12))
def test_every_phase_reads_back_to_the_millisecond(phases: dict[str, float]) -> None:
    line = format_phases(phases)
    pairs = re.findall(r"(\w+)=([0-9.]+)(?: |$)", line)
    assert [name for name, _ in pairs] == list(phases)
    for name, text in pairs:
        assert abs(float(text) - phases[name]) <= 0.0005 + 1e-9 * phases[name]


def test_whole_numbers_lose_their_trailing_zeros() -> None:
    assert format_phases({"program": 2.0, "program_faults": 25012.0, "read_inputs": 0.0}) == (
        "program=2 program_faults=25012 read_inputs=0"
    )
    assert format_phases({"seal": 0.0304, "fetch": 10.5}) == "seal=0.03 fetch=10.5"
