"""A contract rendered for people who must decide whether to sign it."""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from nestor.attestation.initdata import DEFAULT_AGENT_POLICY
from nestor.protocol.contract import (
    INIT_DATA_PLATFORMS,
    Contract,
    InitDataPolicy,
    View,
    format_time,
    signature_statuses,
)

_ROLE_WORDS = {
    "data-provider": "provides data",
    "result-recipient": "receives results",
    "job-submitter": "may submit jobs",
    "auditor": "audits",
}


def _short(party_id: str) -> str:
    return party_id[:23] + "…"


def render_contract(contract: Contract, *, now: datetime) -> RenderableType:
    names = {p.party_id: p.name for p in contract.parties}
    parts: list[RenderableType] = []
    head = Text()
    head.append(f"{contract.name}\n", style="bold")
    head.append(f"collaboration {contract.collaboration_id}, version {contract.version}")
    if contract.previous:
        head.append(f", amends {contract.previous}")
    in_window = contract.not_before <= now <= contract.not_after
    head.append(
        f"\nvalid from {format_time(contract.not_before)} until {format_time(contract.not_after)}"
        f" ({'valid' if in_window else 'NOT valid'} at {format_time(now)})"
    )
    parts.append(head)

    parties = Table(title="Parties", title_justify="left", expand=False)
    for col in ("name", "party id", "roles", "signature"):
        parties.add_column(col)
    for status in signature_statuses(contract):
        p = status.party
        roles = ", ".join(_ROLE_WORDS[r.value] for r in sorted(p.roles))
        sig = (
            "[green]signed[/green]"
            if status.ok
            else f"[red]{escape(_sig_word(status.problem))}[/red]"
        )
        parties.add_row(escape(p.name), _short(p.party_id), roles, sig)
    parts.append(parties)

    if contract.datasets:
        ds = Table(title="Datasets", title_justify="left")
        for col in ("id", "owner", "format", "description", "schema"):
            ds.add_column(col)
        for d in contract.datasets:
            schema = "-" if d.schema is None else ", ".join(f"{c.name}:{c.type}" for c in d.schema)
            ds.add_row(
                d.id, escape(names[d.owner]), d.format, escape(d.description), escape(schema)
            )
        parts.append(ds)

    for prog in contract.programs:
        t = Text()
        t.append(f"Program {prog.id}", style="bold")
        t.append(f": {prog.description}\n")
        t.append(f"  code digest   {prog.digest}\n  entry point   {prog.entry_point}\n")
        t.append(f"  reads         {', '.join(prog.inputs)}\n")
        if prog.parameters:
            params = ", ".join(
                f"{p.name}:{p.type}{'' if p.required else ' (optional)'}" for p in prog.parameters
            )
            t.append(f"  parameters    {params}\n")
        for r in prog.outputs.recipients:
            what = "all results" if r.view is View.FULL else "only the rows about its own data"
            t.append(f"  result to     {names[r.party]}: {what}\n")
        t.append(
            f"  small groups  table cells from fewer than {prog.outputs.min_group_size} "
            "records are suppressed"
        )
        parts.append(t)

    pol = Text()
    pol.append("Enclave policy", style="bold")
    if not contract.enclave_policy.platforms:
        pol.append("\n  no platform accepted yet: nothing can run", style="red")
    for plat in contract.enclave_policy.platforms:
        values = ", ".join(
            f"{k}={_fmt(v)}" for k, v in plat.values.items() if k not in ("platform", "init_data")
        )
        warn = (
            "  (simulated: no hardware protection, development only)"
            if plat.platform == "simulated"
            else ""
        )
        pol.append(f"\n  {plat.platform}: {values}{warn}")
        if plat.platform in INIT_DATA_PLATFORMS:
            pol.append(f"\n    {_init_data_line(plat.init_data)}")
    pol.append(
        "\n  accepted TCB statuses: "
        + (", ".join(contract.enclave_policy.accepted_tcb_statuses) or "none")
    )
    jp = contract.job_policy
    pol.append("\nJob policy", style="bold")
    pol.append(
        "\n  submitters: "
        + (", ".join(names[s] for s in jp.submitters) or "nobody yet")
        + f"\n  every data provider co-signs each job: {'yes' if jp.require_cosign else 'no'}"
        + f"\n  maximum runs: {jp.max_runs if jp.max_runs is not None else 'no limit'}"
    )
    rt = contract.retention
    pol.append("\nRetention", style="bold")
    rule = {
        "after-each-job": "data keys destroyed after each job",
        "after-runs": f"data keys destroyed after {rt.runs} runs",
        "at-date": f"data keys destroyed at {rt.date}",
        "at-expiry": "data keys destroyed when the contract expires",
    }[rt.destroy_keys]
    pol.append(f"\n  {rule}")
    parts.append(pol)

    foot = Text()
    foot.append(f"contract digest {contract.digest}", style="bold")
    foot.append(
        "\nSign only if every party sees this same digest: "
        "nestor contract sign FILE --party DIR --expect-digest " + contract.digest
    )
    parts.append(foot)
    return Group(*[_spaced(p) for p in parts])


def _spaced(r: RenderableType) -> RenderableType:
    return Group(r, Text(""))


def _init_data_line(spec: InitDataPolicy | None) -> str:
    if spec is None:
        return "pod init-data: not checked (any agent policy, e.g. one allowing exec, is accepted)"
    if spec.agent_policy is None:
        policy = "no agent policy entry"
    elif spec.agent_policy == DEFAULT_AGENT_POLICY:
        policy = f"Nestor's baseline agent policy ({_fmt(spec.agent_policy_digest())})"
    else:
        policy = f"agent policy {spec.agent_policy_digest()}"
    return f"pod init-data checked: algorithm {spec.algorithm}, {policy}"


def _fmt(v: object) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, str) and len(v) > 20:
        return v[:16] + "…"
    return str(v)


def _sig_word(problem: str | None) -> str:
    if problem is None:
        return "signed"
    if problem.startswith("missing"):
        return "missing"
    if "previous version" in problem:
        return "over previous version"
    if "edited" in problem:
        return "over edited content"
    return "invalid"
