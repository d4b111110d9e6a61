"""Efficiency benchmarking of retail sites across competing retailers (DEA).

Entry point ``dea_analysis.main:run`` (docs/programs.md). Each input table is
one retailer's sites: a ``site`` id column and the numeric columns the
``inputs`` and ``outputs`` parameters name. The program pools every site and
solves radial DEA models (``models``) with HiGHS, then releases:

- ``scores`` (table, ``_owner``): one row per site with its scores
  (``theta_crs``/``theta_vrs`` for input orientation, Farrell
  ``phi_crs``/``phi_vrs`` for output orientation), ``scale_efficiency``
  when both models ran, ``efficient_*`` flags and, with ``slacks``, the
  second-stage input excesses and output shortfalls;
- ``peers`` (table, ``_owner``): for each inefficient site and model, the
  sites its benchmark is built from and their weights (lambda): own sites
  by id, other retailers' sites by an opaque per-recipient label;
- ``distribution`` (table): histogram of the efficiency (theta, or 1/phi)
  over all sites, bins merged until each passes the disclosure rule;
- ``summary`` (table): mean and windowed quantiles of the efficiency;
- ``meta`` (dict): parameters, counts, what was suppressed.

With ``view: own`` a retailer gets only its own rows of ``scores`` and
``peers``; the pooled tables are built so that no bin or statistic rests on
fewer than ``min_group_size`` sites of other retailers (``disclosure``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dea_analysis import disclosure
from dea_analysis.models import EFFICIENT_TOL, Solution, solve
from dea_analysis.validation import OWNER, Parameters, Sites, parse_parameters, pool_sites

DIGITS = 10


def _score_name(orientation: str) -> str:
    return "theta" if orientation == "input" else "phi"


def _scores(sites: Sites, params: Parameters, solutions: dict[str, Solution]) -> pd.DataFrame:
    table: dict[str, Any] = {OWNER: sites.owner, "dataset": sites.dataset, "site": sites.site}
    name = _score_name(params.orientation)
    for model, sol in solutions.items():
        table[f"{name}_{model}"] = np.round(sol.score, DIGITS)
    if len(solutions) == 2:
        # Both scores on the (0, 1] scale: TE_crs / TE_vrs.
        table["scale_efficiency"] = np.round(
            solutions["crs"].efficiency / solutions["vrs"].efficiency, DIGITS
        )
    for model, sol in solutions.items():
        table[f"efficient_{model}"] = sol.efficient()
    if params.slacks:
        for model, sol in solutions.items():
            assert sol.input_slack is not None
            assert sol.output_slack is not None
            for j, column in enumerate(params.inputs):
                table[f"{model}_excess_{column}"] = np.round(sol.input_slack[:, j], DIGITS)
            for j, column in enumerate(params.outputs):
                table[f"{model}_shortfall_{column}"] = np.round(sol.output_slack[:, j], DIGITS)
    return pd.DataFrame(table)


def _peers(sites: Sites, params: Parameters, solutions: dict[str, Solution]) -> pd.DataFrame:
    key = disclosure.peer_key(
        [
            "\0".join(sites.dataset).encode(),
            "\0".join(sites.site).encode(),
            np.ascontiguousarray(sites.inputs).tobytes(),
            np.ascontiguousarray(sites.outputs).tobytes(),
        ]
    )
    efficient = {model: sol.efficient() for model, sol in solutions.items()}
    rows: list[dict[str, Any]] = []
    for recipient in sorted(set(sites.owner)):
        own = [i for i, o in enumerate(sites.owner) if o == recipient]
        shown = [
            int(p)
            for model, sol in solutions.items()
            for i in own
            if not efficient[model][i]
            for p in sol.peers[i][0]
            if sites.owner[int(p)] != recipient
        ]
        labels = disclosure.competitor_labels(key, recipient, shown)
        for model, sol in solutions.items():
            for i in own:
                if efficient[model][i]:
                    continue
                refs, weights = sol.peers[i]
                named: list[tuple[bool, str, float]] = []
                for p, w in zip(refs.tolist(), weights.tolist(), strict=True):
                    mine = sites.owner[p] == recipient
                    if not mine:
                        peer = labels[p]
                    elif sites.dataset[p] == sites.dataset[i]:
                        peer = sites.site[p]
                    else:
                        peer = f"{sites.dataset[p]}/{sites.site[p]}"
                    named.append((not mine, peer, w))
                # Sorted by what the recipient sees: the pooled order would
                # tell which competitor peers come from the same dataset.
                for other, peer, w in sorted(named):
                    row: dict[str, Any] = {
                        OWNER: recipient,
                        "dataset": sites.dataset[i],
                        "site": sites.site[i],
                        "model": model,
                        "peer": peer,
                        "peer_own": not other,
                    }
                    if params.peer_weights:
                        row["weight"] = round(w, DIGITS)
                    rows.append(row)
    columns = [OWNER, "dataset", "site", "model", "peer", "peer_own"]
    columns += ["weight"] if params.peer_weights else []
    return pd.DataFrame(rows, columns=columns)


def run(
    inputs: dict[str, pd.DataFrame], parameters: dict[str, Any], context: Any
) -> dict[str, pd.DataFrame | dict[str, Any]]:
    params = parse_parameters(parameters)
    k = int(context.min_group_size)
    sites = pool_sites(inputs, params, context.owners)
    solutions: dict[str, Solution] = {
        model: solve(
            sites.inputs,
            sites.outputs,
            returns=model,
            orientation=params.orientation,
            slacks=params.slacks,
        )
        for model in params.returns
    }

    bins: list[dict[str, Any]] = []
    stats: list[dict[str, Any]] = []
    merged = suppressed = 0
    for model, sol in solutions.items():
        eff = sol.efficiency
        released, n_merged = disclosure.histogram(eff, sol.efficient().tolist(), sites.owner, k)
        merged += n_merged
        for b in released:
            bins.append(
                {
                    "model": model,
                    "bin": b.label,
                    "lower": b.lower,
                    "upper": b.upper,
                    "includes_upper": b.closed,
                    "sites": b.sites,
                }
            )
        if disclosure.enough(sites.owner, k):
            stats.append(
                {
                    "model": model,
                    "statistic": "mean",
                    "efficiency": round(float(eff.mean()), DIGITS),
                    "sites": len(eff),
                }
            )
        else:
            suppressed += 1
        for q in disclosure.QUANTILES:
            window = disclosure.windowed_quantile(eff, sites.owner, q, k)
            if window is None:
                suppressed += 1
                continue
            stats.append(
                {
                    "model": model,
                    "statistic": f"p{round(q * 100):02d}",
                    "efficiency": round(window[0], DIGITS),
                    "sites": window[1],
                }
            )

    m, s, n = len(params.inputs), len(params.outputs), len(sites.site)
    meta: dict[str, Any] = {
        "inputs": list(params.inputs),
        "outputs": list(params.outputs),
        "returns": list(params.returns),
        "orientation": params.orientation,
        "score": (
            "theta: radial input efficiency, <= 1"
            if params.orientation == "input"
            else "phi: Farrell radial output expansion, >= 1; efficiency = 1/phi"
        ),
        "efficient_tolerance": f"{EFFICIENT_TOL:g}",
        "sites": n,
        "datasets": len(inputs),
        "min_group_size": k,
        # Cooper, Seiford & Tone's rule of thumb: fewer sites than this and
        # too many of them look efficient.
        "few_sites_for_dimensions": n < max(m * s, 3 * (m + s)),
        "linear_programmes": sum(sol.programmes for sol in solutions.values()),
        "histogram_bins_merged": merged,
        "summary_statistics_suppressed": suppressed,
    }
    return {
        "scores": _scores(sites, params, solutions),
        "peers": _peers(sites, params, solutions),
        "distribution": pd.DataFrame(
            bins, columns=["model", "bin", "lower", "upper", "includes_upper", "sites"]
        ),
        "summary": pd.DataFrame(stats, columns=["model", "statistic", "efficiency", "sites"]),
        "meta": meta,
    }
