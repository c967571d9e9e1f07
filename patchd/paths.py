"""Where patchd keeps its state by default."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SYSTEM_STATE_DIR = Path("/var/lib/patchd")
RUNS_DIR = "runs"  # STATE_DIR/runs/RUN_ID/: a run's transcript.log, and its kept packages
PACKAGES_DIR = "packages"  # in a run's directory: what the run keeps to roll back


def run_dir(state_dir: Path, run_id: str) -> Path:
    """``STATE_DIR/runs/RUN_ID``: what a run keeps on disk beside its record."""
    return state_dir / RUNS_DIR / run_id


def default_state_dir() -> Path:
    """``/var/lib/patchd`` as root; the XDG state directory otherwise (ProgramData on Windows)."""
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "patchd"
    if os.geteuid() == 0:
        return SYSTEM_STATE_DIR
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "state"
    return base / "patchd"
