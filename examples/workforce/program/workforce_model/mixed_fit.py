"""Fitting a linear mixed model with statsmodels' MixedLM, generically.

The workforce model and the reference checks (lme4's sleepstudy and the
statsmodels dietox data) go through :func:`fit_mixed_model`, so the checks
cover the code path the program runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats

# Where the likelihood is flat in one direction (few top-level groups, such
# as three organisations), the gradient optimizers are unreliable from
# statsmodels' default start: L-BFGS can stop on a ridge with a huge, wrong
# group variance and still report convergence, BFGS can fail to converge,
# and which happens depends on floating-point summation order (thread
# counts). Powell's derivative-free search finds the optimum's basin; a
# gradient method started there then polishes it to a proper stationary
# point. On the reference data this reproduces lme4 to about 1e-4.
SEARCH = "powell"
POLISH: tuple[str, ...] = ("bfgs", "lbfgs")
# A variance below this share of the residual variance counts as on the boundary.
BOUNDARY_SHARE = 1e-6


@dataclass(frozen=True)
class MixedFit:
    """What a fit produced. Variances are on the response's scale (not
    divided by the residual variance as statsmodels keeps them internally)."""

    fixed_effects: pd.DataFrame  # term, estimate, std_error, z, p_value, ci_lower, ci_upper
    random_covariance: pd.DataFrame  # covariance of the group-level random effects
    variance_components: Mapping[str, float]  # vc_formula name → variance
    residual_variance: float
    log_likelihood: float
    reml: bool
    converged: bool
    optimizer: str
    boundary: bool  # some variance estimate sits at zero
    observations: int
    groups: int


def _fixed_effects_table(result: Any, confidence: float) -> pd.DataFrame:
    estimate = result.fe_params.astype(float)
    se = result.bse_fe.astype(float)
    z = estimate / se
    quantile = float(stats.norm.ppf(0.5 + confidence / 2))
    return pd.DataFrame(
        {
            "term": [str(t) for t in estimate.index],
            "estimate": estimate.to_numpy(),
            "std_error": se.to_numpy(),
            "z": z.to_numpy(),
            "p_value": 2 * stats.norm.sf(abs(z.to_numpy())),
            "ci_lower": (estimate - quantile * se).to_numpy(),
            "ci_upper": (estimate + quantile * se).to_numpy(),
        }
    )


def _fit(model: Any, reml: bool, method: str, start: Any = None) -> tuple[Any, bool]:
    # statsmodels warns about convergence and boundaries through the warnings
    # module; the outcome is read from the result instead, and warning text
    # (which may quote gradients) must not reach outputs.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = model.fit(reml=reml, method=[method], start_params=start)
    return result, any("boundary" in str(w.message) for w in caught)


def _converged(result: Any) -> bool:
    return bool(result.converged) and math.isfinite(float(result.llf))


def fit_mixed_model(
    data: pd.DataFrame,
    formula: str,
    *,
    groups: str,
    re_formula: str | None = None,
    vc_formula: Mapping[str, str] | None = None,
    reml: bool = True,
    search: str = SEARCH,
    polish: Sequence[str] = POLISH,
    confidence: float = 0.95,
) -> MixedFit:
    """Fits ``formula`` with random effects ``re_formula`` (default: an
    intercept) per level of the column ``groups`` and variance components
    ``vc_formula`` nested in those groups.

    The ``search`` optimizer runs from statsmodels' default start, then the
    ``polish`` optimizers, in turn, from its solution until one converges.
    If neither stage converges, the polish optimizers are tried from the
    default start. Of the converged fits, the one with the highest
    (restricted) log-likelihood is kept; if none converged, the best fit is
    returned with ``converged=False``. Confidence intervals and p-values are
    Wald (normal) ones, as statsmodels reports them.
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie strictly between 0 and 1")
    model = smf.mixedlm(
        formula,
        data,
        groups=data[groups],
        re_formula=re_formula,
        vc_formula=dict(vc_formula) if vc_formula else None,
    )
    searched, boundary = _fit(model, reml, search)
    candidates = [(searched, search, boundary)]
    for method in polish:
        result, boundary = _fit(model, reml, method, searched.params_object)
        candidates.append((result, f"{search}+{method}", boundary))
        if _converged(result):
            break
    if not any(_converged(c[0]) for c in candidates):
        for method in polish:
            result, boundary = _fit(model, reml, method)
            candidates.append((result, method, boundary))
            if _converged(result):
                break
    converged = [c for c in candidates if _converged(c[0])]
    # On a tie the later candidate wins: a polish that confirms the search's
    # point is the stronger statement of convergence.
    pool = reversed(converged or candidates)
    result, optimizer, boundary = max(pool, key=lambda c: float(c[0].llf))
    scale = float(result.scale)
    cov_re = result.cov_re.astype(float)
    vc_names = list(result.model.exog_vc.names) if vc_formula else []
    vcomp = {name: float(v) for name, v in zip(vc_names, result.vcomp, strict=True)}
    variances = [*(cov_re.to_numpy().diagonal().tolist()), *vcomp.values()]
    boundary = boundary or any(v <= BOUNDARY_SHARE * scale for v in variances)
    return MixedFit(
        fixed_effects=_fixed_effects_table(result, confidence),
        random_covariance=cov_re,
        variance_components=vcomp,
        residual_variance=scale,
        log_likelihood=float(result.llf),
        reml=reml,
        converged=_converged(result),
        optimizer=optimizer,
        boundary=boundary,
        observations=int(result.model.nobs),
        groups=int(result.model.n_groups),
    )
