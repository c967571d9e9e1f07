"""flatpak's listings, asked for with ``--columns`` so they parse without guessing.

Without a terminal flatpak separates the columns it was asked for with tabs and prints
no header (flatpak 1.14: ``flatpak list --columns=application,arch,branch,active,origin,options``
→ ``org.example.App<TAB>x86_64<TAB>stable<TAB>da5dd1922477<TAB>flathub<TAB>current``).
Commits appear abbreviated to 12 hexadecimal digits; patchd uses that form as the
"version" everywhere and asks for the full commit only when a command needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ROWS = 100_000
LIST_COLUMNS = "application,arch,branch,active,origin,options"
UPDATE_COLUMNS = "ref,commit,origin"


@dataclass(frozen=True)
class InstalledRef:
    """One installed application or runtime."""

    kind: str  # "app" or "runtime"
    application: str
    arch: str
    branch: str
    commit: str  # abbreviated, as flatpak prints it
    origin: str

    @property
    def name(self) -> str:
        """``ID//BRANCH``: flatpak's own partial-ref syntax, unique in one installation."""
        return f"{self.application}//{self.branch}"

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.application}/{self.arch}/{self.branch}"


@dataclass(frozen=True)
class AvailableUpdate:
    """One ref the remote has a newer commit of."""

    kind: str
    application: str
    arch: str
    branch: str
    commit: str
    origin: str

    @property
    def name(self) -> str:
        return f"{self.application}//{self.branch}"

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.application}/{self.arch}/{self.branch}"


def _rows(text: str, width: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines()[:MAX_ROWS]:
        fields = line.split("\t")
        if len(fields) == width and all(fields[:3]):
            rows.append(fields)
    return rows


def parse_list(text: str) -> list[InstalledRef]:
    """Rows of ``flatpak list --columns=`` :data:`LIST_COLUMNS`."""
    found = []
    for application, arch, branch, commit, origin, options in _rows(text, 6):
        kind = "runtime" if "runtime" in options.split(",") else "app"
        found.append(InstalledRef(kind, application, arch, branch, commit, origin))
    return found


def parse_updates(text: str) -> list[AvailableUpdate]:
    """Rows of ``flatpak remote-ls --updates --columns=`` :data:`UPDATE_COLUMNS`."""
    found = []
    for ref, commit, origin in _rows(text, 3):
        parts = ref.split("/")
        if len(parts) != 4 or parts[0] not in ("app", "runtime"):
            continue
        found.append(AvailableUpdate(parts[0], parts[1], parts[2], parts[3], commit, origin))
    return found
