"""Human-readable renderings of scans and runs (the JSON forms live with the data)."""

from __future__ import annotations

from collections.abc import Sequence

from patchd.cli.output import Style, table
from patchd.discovery.inventory import Inventory
from patchd.models import Classification, Update, UpdateState
from patchd.scan import ScanReport
from patchd.state.store import RunRecord
from patchd.timeutil import format_time

_GIB = 1024**3
_SEVERITY_STYLE = {"critical": ("red", "bold"), "important": ("red",), "moderate": ("yellow",)}
_OUTCOME_STYLE = {"done": ("green",), "failed": ("red", "bold"), "skipped": ("dim",)}
_STATUS_STYLE = {
    "succeeded": ("green",),
    "failed": ("red", "bold"),
    "partial": ("yellow",),
    "rolled-back": ("cyan",),
    "interrupted": ("red",),
}


def _support_line(inv: Inventory, style: Style) -> str:
    eol = inv.eol
    if eol is None:
        return "end of life unknown for this release"
    until = eol.security_end.isoformat() if eol.security_end else "unknown"
    if not eol.past_security_end:
        return f"{eol.name}: security support until {until}"
    if eol.extended_end and not eol.past_extended_end:
        return style(
            f"{eol.name}: regular security support ended {until}; "
            f"{eol.extended_kind or 'extended support'} until {eol.extended_end.isoformat()}",
            "yellow",
        )
    ended = eol.extended_end.isoformat() if eol.extended_end else until
    return style(f"{eol.name} is past its end of life (support ended {ended})", "red", "bold")


def render_inventory(inv: Inventory, style: Style) -> str:
    lines = []
    facts = [inv.hostname or "(no hostname)", inv.os.pretty_name]
    if inv.os.kernel:
        facts.append(f"kernel {inv.os.kernel}")
    facts += [f for f in (inv.architecture, inv.machine_type) if f]
    lines.append(style(" · ".join(facts), "bold"))
    if inv.root != "/":
        lines.append(f"Root:      {inv.root}")
    if inv.hardware:
        hw = inv.hardware
        memory = hw.get("memory_total_bytes", 0) / _GIB
        lines.append(
            f"Hardware:  {hw.get('cpu_logical') or '?'} CPUs ({hw.get('cpu_model') or 'unknown'}), "
            f"{memory:.1f} GiB memory, {len(hw.get('disks', []))} disks"
        )
    lines.append(f"Support:   {_support_line(inv, style)}")
    reboot = "required: " + "; ".join(inv.reboot.reasons) if inv.reboot.required else "not required"
    lines.append(f"Reboot:    {style(reboot, 'yellow') if inv.reboot.required else reboot}")
    backends = ", ".join(f"{b.name} ({b.detail})" for b in inv.backends) or "none"
    lines.append(f"Packages:  {len(inv.packages)} installed; package managers: {backends}")
    if inv.tags:
        lines.append(f"Tags:      {', '.join(inv.tags)}")
    return "\n".join(lines)


def _update_row(u: Update) -> list[str]:
    cves = ",".join(u.cves[:3]) + (f" +{len(u.cves) - 3}" if len(u.cves) > 3 else "")
    return [
        u.name,
        u.backend,
        u.installed_version,
        u.available_version,
        u.classification.value,
        u.severity.value,
        str(u.source),
        u.state.value,
        cves,
    ]


def _update_style(u: Update) -> tuple[str, ...]:
    if u.state is not UpdateState.AVAILABLE:
        return ("dim",)
    if u.classification is Classification.SECURITY:
        return _SEVERITY_STYLE.get(u.severity.value, ("red",))
    return ()


def render_updates(updates: Sequence[Update], style: Style) -> str:
    if not updates:
        return "No updates available."
    security = sum(u.classification is Classification.SECURITY for u in updates)
    head = style(f"Updates: {len(updates)} ({security} security)", "bold")
    body = table(
        [
            "PACKAGE",
            "BACKEND",
            "INSTALLED",
            "AVAILABLE",
            "CLASS",
            "SEVERITY",
            "SOURCE",
            "STATE",
            "CVES",
        ],
        [_update_row(u) for u in updates],
        style,
        row_styles=[_update_style(u) for u in updates],
    )
    return f"{head}\n{body}"


def render_scan(report: ScanReport, style: Style) -> str:
    parts = [render_inventory(report.inventory, style), "", render_updates(report.updates, style)]
    parts += [style(f"warning: {w}", "yellow") for w in report.warnings]
    return "\n".join(parts)


def render_run(run: RunRecord, style: Style) -> str:
    status = style(run.status, *_STATUS_STYLE.get(run.status, ()))
    lines = [
        f"Run {style(run.id, 'bold')} ({run.kind}{', dry run' if run.dry_run else ''}): {status}"
    ]
    if run.parent_run:
        lines.append(f"  undoes run {run.parent_run}")
    rows = []
    for item in run.items:
        c = item.change
        outcome = item.outcome
        rows.append(
            [
                c.name,
                c.from_version,
                c.to_version,
                outcome,
                "yes" if item.rollback_available else ("-" if run.kind == "rollback" else "no"),
                item.detail,
            ]
        )
    if rows:
        lines.append(
            table(["PACKAGE", "FROM", "TO", "RESULT", "ROLLBACK", "DETAIL"], rows, Style(False))
        )
    lines += [f"  note: {n}" for n in run.notes]
    return "\n".join(lines)


def render_run_line(run: RunRecord, style: Style) -> str:
    done = sum(i.outcome == "done" for i in run.items)
    status = style(run.status, *_STATUS_STYLE.get(run.status, ()))
    return (
        f"  {run.id}  {run.kind:<8}  {status:<11}  {done}/{len(run.items)} packages  "
        f"started {format_time(run.started_at)}"
    )
