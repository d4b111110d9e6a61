"""The job's parameters, checked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workforce_model.errors import InvalidInput

KNOWN = ("covariates", "reference_structure", "confidence_percent", "min_teams")
DEFAULT_COVARIATES = ("tenure_years",)
# Job parameters are canonical JSON, which has no floats: the level is given in percent.
DEFAULT_CONFIDENCE_PERCENT = 95
DEFAULT_MIN_TEAMS = 3
# Column names go into a patsy formula, which evaluates Python expressions:
# only plain identifiers may reach it.
IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
STRUCTURAL = ("employee", "team", "team_structure", "performance")


@dataclass(frozen=True)
class Parameters:
    covariates: tuple[str, ...]
    reference_structure: str | None  # None: the first structure level in sorted order
    confidence_percent: int

    @property
    def confidence_level(self) -> float:
        return self.confidence_percent / 100

    min_teams: int  # teams each organisation must contribute to the model


def parse_parameters(parameters: dict[str, Any]) -> Parameters:
    unknown = sorted(set(parameters) - set(KNOWN))
    if unknown:
        raise InvalidInput(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} (known: {', '.join(KNOWN)})"
        )

    raw = parameters.get("covariates", ",".join(DEFAULT_COVARIATES))
    if not isinstance(raw, str):
        raise InvalidInput("parameter 'covariates' must be a comma-separated list of column names")
    covariates = tuple(c.strip() for c in raw.split(",") if c.strip())
    for name in covariates:
        if not IDENTIFIER.fullmatch(name):
            raise InvalidInput(
                "parameter 'covariates' must name columns made of letters, digits and '_' "
                "(starting with a letter)"
            )
        if name in STRUCTURAL:
            raise InvalidInput(
                f"parameter 'covariates' names {name!r}, which the model already uses"
            )
    if len(set(covariates)) != len(covariates):
        raise InvalidInput("parameter 'covariates' names a column twice")

    reference = parameters.get("reference_structure")
    if reference is not None and (not isinstance(reference, str) or not reference):
        raise InvalidInput("parameter 'reference_structure' must be a non-empty string")

    confidence = parameters.get("confidence_percent", DEFAULT_CONFIDENCE_PERCENT)
    if isinstance(confidence, bool) or not isinstance(confidence, int):
        raise InvalidInput("parameter 'confidence_percent' must be an integer")
    if not 50 <= confidence <= 99:
        raise InvalidInput("parameter 'confidence_percent' must lie between 50 and 99")

    min_teams = parameters.get("min_teams", DEFAULT_MIN_TEAMS)
    if isinstance(min_teams, bool) or not isinstance(min_teams, int) or min_teams < 2:
        raise InvalidInput("parameter 'min_teams' must be an integer of at least 2")

    return Parameters(
        covariates=covariates,
        reference_structure=reference,
        confidence_percent=confidence,
        min_teams=min_teams,
    )
