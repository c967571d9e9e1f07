"""A stable identity for the endpoint, before it has one from a collector.

Percentage rings and window splay need a key that does not change between runs:
systemd's machine id (``/etc/machine-id``), else D-Bus's, else the hostname.
"""

from __future__ import annotations

import re

from patchd.target import Target

MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
_MACHINE_ID = re.compile(r"^[0-9a-f]{32}$")


def endpoint_key(target: Target, hostname: str) -> str:
    """``machine-id:<id>`` when the target has one, else ``hostname:<name>``."""
    for candidate in MACHINE_ID_FILES:
        try:
            text = target.path(candidate).read_bytes()[:64].decode("ascii", "replace").strip()
        except OSError:
            continue
        if _MACHINE_ID.match(text):
            return f"machine-id:{text}"
    return f"hostname:{hostname}"
