"""snapper: snapshots through the administrator's own snapper configuration.

Used when snapper is installed and one of its configurations has the target root as its
subvolume (``root`` for ``/`` on openSUSE). patchd's snapshots are ``single`` snapshots
with the ``number`` cleanup algorithm and the user data ``patchd=<run id>`` (that is how
patchd recognises its own); snapper's own number cleanup may also remove them. Every
command runs with ``--no-dbus``, so snapperd need not run. A restore is ``snapper
undochange N..0``: the files changed since the snapshot are put back in place, on the
running system. Output is read as JSON (snapper 0.8.6 and later) or from the table
older versions print.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from patchd.backends.base import ProbeStatus
from patchd.snapshots.base import (
    RestoreOutcome,
    Snapshot,
    SnapshotContext,
    SnapshotError,
    SnapshotProbe,
    SnapshotProvider,
    resolved_root,
)

JSON_OUTPUT_SINCE = (0, 8, 6)  # --jsonout and --machine-readable arrived in snapper 0.8.6
USERDATA_KEY = "patchd"
_VERSION = re.compile(r"^snapper (\d+)\.(\d+)\.(\d+)", re.MULTILINE)


class SnapperProvider(SnapshotProvider):
    """Snapshots through snapper's configuration for the target root (see the module doc)."""

    name = "snapper"

    def __init__(self, context: SnapshotContext) -> None:
        super().__init__(context)
        self.config: str | None = None  # found by the probe
        self.json_output = True

    def _probe(self) -> SnapshotProbe:
        if not self.context.platform.startswith("linux"):
            return SnapshotProbe(ProbeStatus.ABSENT, "snapper exists only on Linux")
        found = _VERSION.search(self.run(["snapper", "--version"]).stdout)
        if found is None:
            return SnapshotProbe(ProbeStatus.BROKEN, "`snapper --version` names no version")
        version = tuple(int(part) for part in found.groups())
        self.json_output = version >= JSON_OUTPUT_SINCE
        configs = self._configs()
        root = resolved_root(self.context.target)
        for config, subvolume in configs.items():
            if Path(subvolume) == root:
                self.config = config
                return SnapshotProbe(
                    ProbeStatus.PRESENT,
                    f"configuration {config}",
                    covers_target=True,
                    version=".".join(map(str, version)),
                )
        known = ", ".join(f"{c} ({s})" for c, s in configs.items()) or "none"
        return SnapshotProbe(
            ProbeStatus.PRESENT, f"no configuration for {root}; configurations: {known}"
        )

    def _configs(self) -> dict[str, str]:
        if self.json_output:
            out = self.run(["snapper", "--no-dbus", "--jsonout", "list-configs"]).stdout
            return {c["config"]: c["subvolume"] for c in json.loads(out)["configs"]}
        rows = parse_table(self.run(["snapper", "--no-dbus", "list-configs"]).stdout)
        return {row["Config"]: row["Subvolume"] for row in rows}

    def _config(self) -> str:
        self.require()
        if self.config is None:  # a probe that covers the target always sets it
            raise SnapshotError(f"no snapper configuration for {self.context.target}")
        return self.config

    def _create(self, label: str, run_id: str) -> Snapshot:
        config = self._config()
        description = f"patchd {run_id}" + (f": {label}" if label else "")
        out = self.run(
            [
                "snapper", "--no-dbus", "-c", config, "create",
                "--type", "single",
                "--cleanup-algorithm", "number",
                "--description", description,
                "--userdata", f"{USERDATA_KEY}={run_id}",
                "--print-number",
            ]
        ).stdout  # fmt: skip
        number = out.strip().splitlines()[-1] if out.strip() else ""
        if not number.isdigit():
            raise SnapshotError(f"snapper create printed no snapshot number: {out[-200:]!r}")
        return Snapshot(self.name, number, self.context.clock(), label, run_id, {"config": config})

    def _list(self) -> list[Snapshot]:
        config = self._config()
        if self.json_output:
            out = self.run(["snapper", "--no-dbus", "--utc", "--jsonout", "-c", config, "list"])
            return parse_json_list(out.stdout, config)
        out = self.run(["snapper", "--no-dbus", "--utc", "--iso", "-c", config, "list"])
        return parse_table_list(out.stdout, config)

    def _delete(self, snapshot: Snapshot) -> None:
        self.run(["snapper", "--no-dbus", "-c", self._config(), "delete", snapshot.id])

    def _restore(self, snapshot: Snapshot) -> RestoreOutcome:
        config = self._config()
        out = self.run(["snapper", "--no-dbus", "-c", config, "undochange", f"{snapshot.id}..0"])
        detail = (
            f"files changed since snapshot {snapshot.id} put back in place ({out.stdout.strip()})"
        )
        if self.context.target.is_host:
            detail += "; programs still running use the replaced files: reboot"
        return RestoreOutcome(snapshot, reboot_required=self.context.target.is_host, detail=detail)


def parse_json_list(text: str, config: str) -> list[Snapshot]:
    """patchd's snapshots in ``snapper --utc --jsonout -c CONFIG list`` output."""
    return [
        s
        for entry in json.loads(text).get(config, [])
        if (
            s := _snapshot(
                config, entry["number"], entry["date"], entry["description"], entry["userdata"]
            )
        )
    ]


def parse_table_list(text: str, config: str) -> list[Snapshot]:
    """patchd's snapshots in ``snapper --utc --iso -c CONFIG list`` (the table of old snapper)."""
    found = []
    for row in parse_table(text):
        pairs = (p.partition("=") for p in row.get("Userdata", "").split(",") if "=" in p)
        userdata = {k.strip(): v.strip() for k, _, v in pairs}
        snapshot = _snapshot(config, row["#"], row["Date"], row["Description"], userdata)
        if snapshot is not None:
            found.append(snapshot)
    return found


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of a snapper table (``Col | Col`` header, a ``---+---`` rule, then rows)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return []
    split = re.compile(r"\s*[|│]\s*")
    header = [h.strip() for h in split.split(lines[0].strip())]
    return [dict(zip(header, split.split(line.strip()), strict=False)) for line in lines[2:]]


def _snapshot(
    config: str, number: Any, date: str, description: str, userdata: dict[str, str] | None
) -> Snapshot | None:
    run_id = (userdata or {}).get(USERDATA_KEY)
    if not run_id or not str(number).isdigit():
        return None  # not patchd's
    created = datetime.strptime(date.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    label = description.partition(": ")[2] if description.startswith(f"patchd {run_id}") else ""
    return Snapshot("snapper", str(number), created, label, run_id, {"config": config})
