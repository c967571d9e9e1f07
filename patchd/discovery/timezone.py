"""The endpoint's own time zone, as an IANA zone (maintenance windows in "local" time use it)."""

from __future__ import annotations

import os
from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from patchd.target import Target

MAX_TIMEZONE_FILE_BYTES = 256


def zone_name(target: Target) -> str | None:
    """The IANA name of the target's zone: ``/etc/localtime``'s link, else ``/etc/timezone``."""
    localtime = target.path("/etc/localtime")
    try:
        link = os.readlink(localtime)
    except OSError:
        link = ""
    if "zoneinfo/" in link:
        return link.split("zoneinfo/", 1)[1]
    try:
        name = target.path("/etc/timezone").read_bytes()[:MAX_TIMEZONE_FILE_BYTES].decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name or None


def local_zone(target: Target) -> tzinfo:
    """The target's zone; UTC when it cannot be told (``TZ`` is honoured on the host)."""
    names = [os.environ.get("TZ", "").removeprefix(":")] if target.is_host else []
    names.append(zone_name(target) or "")
    for name in names:
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return UTC
