"""The installed system patchd manages: the running host or an alternate root.

``--root DIR`` lets an administrator patch a mounted image or container root, and lets
tests work on isolated roots. Every path into the managed system goes through
:meth:`Target.path` so that it lands inside the root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Target:
    """The root directory of the system being managed."""

    root: Path = Path("/")

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> Target:
        return cls(Path(os.path.abspath(root)))

    @property
    def is_host(self) -> bool:
        """True when patchd manages the system it runs on (root ``/``)."""
        return self.root == Path("/") or self.root == Path(self.root.anchor)

    def path(self, system_path: str) -> Path:
        """``system_path`` as seen from patchd: ``/etc/os-release`` → ``ROOT/etc/os-release``."""
        relative = PurePosixPath(system_path).relative_to("/")
        return self.root.joinpath(*relative.parts)

    def __str__(self) -> str:
        return str(self.root)
