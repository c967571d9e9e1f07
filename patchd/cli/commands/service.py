"""``patchd service install|uninstall|status``: patchd as this system's service.

Lays down (or removes) the unit or plist, the default configuration and the state, log
and key directories, then asks the service manager to enable the service. With
``--root`` everything happens inside that root and only offline manager commands run,
so an image or a test root can be prepared without touching the host.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from patchd.cli.main import Invocation
from patchd.cli.output import write_json
from patchd.errors import UsageError
from patchd.service import installer
from patchd.service.layout import ServiceLayout, launchd_agent, systemd_agent, systemd_collector
from patchd.service.managers import Launchd, Systemd

SCHEMA_VERSION = 1
MANAGERS = ("systemd", "launchd", "windows")


def _manager_name(invocation: Invocation) -> str:
    chosen: str | None = invocation.args.manager
    if chosen:
        return chosen
    return {"darwin": "launchd", "win32": "windows"}.get(sys.platform, "systemd")


def _layout_and_manager(invocation: Invocation) -> tuple[ServiceLayout, Systemd | Launchd]:
    name = _manager_name(invocation)
    collector = bool(invocation.args.collector)
    if name == "windows":
        raise UsageError(
            "the Windows service is installed by the Windows installer",
            hint="see docs/install.md (Windows); `patchd service` handles systemd and launchd",
        )
    if name == "launchd":
        if collector:
            raise UsageError("--collector: the collector runs under systemd only")
        return launchd_agent(), Launchd(invocation.root)
    layout = systemd_collector() if collector else systemd_agent()
    return layout, Systemd(invocation.root)


def _require_privilege(root: Path) -> None:
    if root == Path("/") and hasattr(os, "geteuid") and os.geteuid() != 0:
        raise UsageError(
            "patchd service changes this system's services and needs root",
            hint="run it with sudo, or give --root DIR to prepare another root",
        )


def _report(
    invocation: Invocation, changes: list[installer.Change], commands: list[list[str]]
) -> int:
    if invocation.args.json:
        write_json(
            {
                "schema_version": SCHEMA_VERSION,
                "changes": [
                    {"action": c.action, "path": str(c.path), "why": c.why} for c in changes
                ],
                "commands": commands,
            }
        )
        return 0
    for change in changes:
        why = f" ({change.why})" if change.why else ""
        print(f"{change.action:<9} {change.path}{why}")
    for argv in commands:
        print(f"ran       {' '.join(argv)}")
    return 0


def install(invocation: Invocation) -> int:
    """Lay the service down and enable it; running it twice changes nothing."""
    _require_privilege(invocation.root)
    layout, manager = _layout_and_manager(invocation)
    changes = installer.install(layout, invocation.root)
    commands = manager.after_install(layout.unit)
    manager.run(commands)
    return _report(invocation, changes, commands)


def uninstall(invocation: Invocation) -> int:
    """Disable the service and remove what install made; keep state and edited files."""
    _require_privilege(invocation.root)
    layout, manager = _layout_and_manager(invocation)
    commands: list[list[str]] = []
    if installer.definition_state(layout, invocation.root) != "absent":
        commands = manager.before_uninstall(layout.unit)
        manager.run(commands)
    changes = installer.uninstall(layout, invocation.root)
    after = manager.after_uninstall()
    manager.run(after)
    return _report(invocation, changes, commands + after)


def status(invocation: Invocation) -> int:
    """Whether the service is installed, enabled and running (where the manager can say)."""
    layout, manager = _layout_and_manager(invocation)
    installed = installer.definition_state(layout, invocation.root)
    state = manager.status(layout.unit) if installed != "absent" else None
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "unit": layout.unit,
        "manager": layout.manager,
        "definition": str(invocation.root / layout.definition),
        "installed": installed,
        "enabled": state.enabled if state else False,
        "running": state.running if state else False,
    }
    if invocation.args.json:
        write_json(document)
        return 0

    def word(value: bool | None) -> str:
        return "unknown (not the running system)" if value is None else "yes" if value else "no"

    print(f"{layout.unit} ({layout.manager}): {document['definition']}")
    print(f"  installed: {installed}")
    print(f"  enabled:   {word(document['enabled'])}")
    print(f"  running:   {word(document['running'])}")
    return 0
