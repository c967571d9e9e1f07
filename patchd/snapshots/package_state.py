"""Package state: the exact installed versions and, on Debian-family targets, the modified
configuration files — a snapshot every target can have, whatever its filesystem.

Versions come from the context's ``installed`` callable (the package backend's reader),
so the snapshot is backend-neutral. On a target with a dpkg database, each conffile in
the status file's ``Conffiles:`` field whose content no longer matches the recorded MD5
(what ``dpkg --verify`` reports as ``??5??????  c``) is copied into the snapshot. Layout::

    STATE_DIR/snapshots/<run id>/snapshot.json   provider, id, time, label, run (for listing)
                                 manifest.json   packages and conffiles (at most 50 MiB)
                                 conffiles/NNNNN the saved content of each modified conffile

A snapshot is built in a hidden directory and renamed into place, so a crash never
leaves half of one. A restore puts the saved conffiles back and *returns* the package
changes (current → recorded version); the caller performs them through the backend,
keeping local conffiles (``--force-confold``) so the restored ones stay.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from patchd.atomicfile import atomic_write_bytes, atomic_write_text, fsync_directory
from patchd.backends.apt.dpkgdb import MAX_STATUS_BYTES
from patchd.backends.apt.stanzas import iter_stanzas
from patchd.backends.base import ProbeStatus
from patchd.models import InstalledPackage, PackageChange
from patchd.snapshots.base import (
    MAX_SNAPSHOTS_LISTED,
    RestoreOutcome,
    Snapshot,
    SnapshotError,
    SnapshotProbe,
    SnapshotProvider,
)
from patchd.timeutil import parse_time

MAX_MANIFEST_BYTES = 50 * 1024 * 1024
MAX_CONFFILE_BYTES = 1024 * 1024  # a larger modified conffile is recorded, not copied
MAX_SAVED_BYTES = 256 * 1024 * 1024  # all copied conffiles of one snapshot together
MAX_HASHED_BYTES = 64 * 1024 * 1024  # a larger conffile is not checked at all
MAX_CONFFILES = 10_000  # conffiles checked per snapshot (a Debian system has ~1,500)
MAX_HEADER_BYTES = 64 * 1024
STATUS_FILE = "/var/lib/dpkg/status"


class PackageStateProvider(SnapshotProvider):
    """Installed versions and modified Debian conffiles (see the module doc)."""

    name = "package-state"
    filesystem = False

    @property
    def directory(self) -> Path:
        return self.context.state_dir / "snapshots"

    def _probe(self) -> SnapshotProbe:
        if self.context.installed is None:
            return SnapshotProbe(ProbeStatus.ABSENT, "no package backend to read versions from")
        debian = self.context.target.path(STATUS_FILE).is_file()
        what = "versions and modified conffiles" if debian else "versions"
        return SnapshotProbe(ProbeStatus.PRESENT, what, covers_target=True)

    def _packages(self) -> list[InstalledPackage]:
        if self.context.installed is None:
            raise SnapshotError("no package backend to read installed versions from")
        return self.context.installed()

    def _create(self, label: str, run_id: str) -> Snapshot:
        final = self.directory / run_id
        if final.exists():
            raise SnapshotError(
                f"{final} already exists: run {run_id} has a package-state snapshot"
            )
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        snapshot = Snapshot(
            self.name, run_id, self.context.clock(), label, run_id, {"path": str(final)}
        )
        work = Path(tempfile.mkdtemp(prefix=f".{run_id}.", dir=self.directory))
        try:
            conffiles = self._save_conffiles(work / "conffiles")
            manifest = {
                **_header(snapshot),
                "target": str(self.context.target),
                "packages": [p.as_dict() for p in self._packages()],
                "conffiles": conffiles,
            }
            body = json.dumps(manifest, indent=1, sort_keys=True).encode()
            if len(body) > MAX_MANIFEST_BYTES:
                raise SnapshotError(f"package-state manifest over {MAX_MANIFEST_BYTES} bytes")
            atomic_write_bytes(work / "manifest.json", body)
            atomic_write_text(work / "snapshot.json", json.dumps(_header(snapshot)))
            os.rename(work, final)
            fsync_directory(self.directory)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return snapshot

    def _save_conffiles(self, into: Path) -> list[dict[str, Any]]:
        """Check every recorded conffile; copy the modified ones into ``into``."""
        status = self.context.target.path(STATUS_FILE)
        if not status.is_file():
            return []
        with status.open("rb") as f:
            raw = f.read(MAX_STATUS_BYTES + 1)
        if len(raw) > MAX_STATUS_BYTES:
            raise SnapshotError(f"{status} is larger than {MAX_STATUS_BYTES} bytes")
        text = raw.decode("utf-8", "replace")
        into.mkdir(mode=0o700)
        entries: list[dict[str, Any]] = []
        seen: set[str] = set()
        saved_bytes = 0
        for package, path, md5 in _recorded_conffiles(text):
            if path in seen or md5 == "newconffile":  # shared by Multi-Arch; not yet configured
                continue
            seen.add(path)
            if len(seen) > MAX_CONFFILES:
                entries.append({"path": "", "package": "", "note": f"over {MAX_CONFFILES}"})
                break
            entry, data = self._examine(package, path, md5)
            if entry is None:
                continue
            if data is not None and saved_bytes + len(data) <= MAX_SAVED_BYTES:
                name = f"{len(entries):05d}"
                atomic_write_bytes(into / name, data)
                entry["saved"] = f"{into.name}/{name}"
                saved_bytes += len(data)
            entries.append(entry)
        return entries

    def _examine(
        self, package: str, path: str, md5: str
    ) -> tuple[dict[str, Any] | None, bytes | None]:
        """A manifest entry for a modified (or uncheckable) conffile, and its content to save."""
        entry: dict[str, Any] = {"path": path, "package": package, "md5_recorded": md5}
        full = self._inside(path)
        if full is None:
            return {**entry, "note": "leads outside the target root"}, None
        content = _read_regular_file(full)
        if isinstance(content, str):
            return {**entry, "note": content}, None
        data, st = content
        found = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if found == md5:
            return None, None
        entry.update(md5_found=found, size=len(data), mode=stat.S_IMODE(st.st_mode))
        entry.update(uid=st.st_uid, gid=st.st_gid, saved=None)
        if len(data) > MAX_CONFFILE_BYTES:
            return {**entry, "note": f"modified, larger than {MAX_CONFFILE_BYTES} bytes"}, None
        return entry, data

    def _inside(self, system_path: str) -> Path | None:
        """``system_path`` under the target root, or None if a symlink leads out of it."""
        full = self.context.target.path(system_path)
        root = os.path.realpath(self.context.target.root)
        parent = os.path.realpath(full.parent)
        if parent != root and not parent.startswith(root.rstrip("/") + "/"):
            return None
        return Path(parent) / full.name

    def _list(self) -> list[Snapshot]:
        if not self.directory.is_dir():
            return []
        found = []
        for entry in sorted(self.directory.iterdir())[: MAX_SNAPSHOTS_LISTED + 1]:
            header = entry / "snapshot.json"
            if entry.name.startswith(".") or entry.is_symlink() or not header.is_file():
                continue
            with header.open("rb") as f:
                data = json.loads(f.read(MAX_HEADER_BYTES))
            found.append(
                Snapshot(
                    self.name,
                    entry.name,
                    parse_time(data["created_at"]),
                    data["label"],
                    data["run_id"],
                    {"path": str(entry)},
                )
            )
        return found

    def _delete(self, snapshot: Snapshot) -> None:
        # Out of sight first: a crash half-way through never leaves half a snapshot listed.
        doomed = self.directory / f".{snapshot.id}.deleting"
        shutil.rmtree(doomed, ignore_errors=True)
        os.rename(self.directory / snapshot.id, doomed)
        fsync_directory(self.directory)
        shutil.rmtree(doomed)

    def _restore(self, snapshot: Snapshot) -> RestoreOutcome:
        """Put the saved conffiles back; return the package changes the caller must make."""
        where = self.directory / snapshot.id
        with (where / "manifest.json").open("rb") as f:
            manifest = json.loads(f.read(MAX_MANIFEST_BYTES + 1))
        restored = [e["path"] for e in manifest["conffiles"] if self._put_back(where, e)]
        recorded = [InstalledPackage(**p) for p in manifest["packages"]]
        current = {(p.backend, p.name, p.arch): p for p in self._packages()}
        changes, wanted = [], set()
        for old in recorded:
            key = (old.backend, old.name, old.arch)
            wanted.add(key)
            now = current.get(key)
            if now is None or now.version != old.version:
                from_version = now.version if now is not None else ""
                changes.append(PackageChange(*key, from_version, old.version))
        added = sorted(f"{name}:{arch}" for (_, name, arch) in current.keys() - wanted)
        detail = f"{len(changes)} package(s) to return to their recorded versions"
        detail += f"; conffiles put back: {', '.join(restored) or 'none'}"
        if added:
            detail += f"; installed since, left as they are: {', '.join(added)}"
        return RestoreOutcome(snapshot, False, detail, package_changes=tuple(changes))

    def _put_back(self, where: Path, entry: dict[str, Any]) -> bool:
        if not entry.get("saved"):
            return False
        with (where / entry["saved"]).open("rb") as f:
            data = f.read(MAX_CONFFILE_BYTES + 1)
        if hashlib.md5(data, usedforsecurity=False).hexdigest() != entry["md5_found"]:
            raise SnapshotError(f"the saved copy of {entry['path']} is damaged")
        full = self._inside(entry["path"])
        if full is None or full.is_symlink():
            raise SnapshotError(f"{entry['path']} now leads outside the target root")
        full.parent.mkdir(parents=True, exist_ok=True)
        if full.is_file() and full.read_bytes() == data:
            return False
        atomic_write_bytes(full, data, mode=entry["mode"])
        os.chown(full, entry["uid"], entry["gid"])
        return True


def _read_regular_file(path: Path) -> tuple[bytes, os.stat_result] | str:
    """The content and status of ``path`` (never through a symlink), or why not."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable: {e.strerror}"
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_HASHED_BYTES:
            return "not a regular file, or too large to check"
        return f.read(MAX_HASHED_BYTES + 1), st


def _header(snapshot: Snapshot) -> dict[str, Any]:
    return {k: v for k, v in snapshot.as_dict().items() if k != "details"}


def _recorded_conffiles(status_text: str) -> list[tuple[str, str, str]]:
    """``(package, path, md5)`` for each line of each stanza's ``Conffiles:`` field."""
    found = []
    for stanza in iter_stanzas(status_text):
        for line in stanza.get("Conffiles", "").split("\n"):
            parts = line.split()  # "/etc/foo.conf <md5> [obsolete] [remove-on-upgrade]"
            if len(parts) >= 2 and parts[0].startswith("/"):
                found.append((stanza.get("Package", "?"), parts[0], parts[1]))
    return found
