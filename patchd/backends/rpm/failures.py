"""Names and reasons of packages rpm failed to install, from a dnf or zypper transcript."""

from __future__ import annotations

import re

# rpm: "error: %prein(fragile-1.1-1.noarch) scriptlet failed, exit status 1"
_SCRIPTLET_FAILED = re.compile(
    r"^error: %(?P<which>\w+)\((?P<nevra>[^)\s]+)\) scriptlet failed, (?P<why>.+)$", re.MULTILINE
)
# rpm: "error: fragile-1.1-1.noarch: install failed"; zypper: "Installation of NEVRA failed:"
_INSTALL_FAILED = re.compile(
    r"^(?:error: (?P<rpm>\S+): install failed|Installation of (?P<zypper>\S+) failed:)$",
    re.MULTILINE,
)


def nevra_name(nevra: str) -> str:
    """``fragile-1.1-1.noarch`` → ``fragile`` (the name, then version and release, dashed)."""
    return nevra.rsplit("-", 2)[0]


def rpm_filename(name: str, evr: str, arch: str) -> str:
    """The file name a package is published under (the epoch is never in it)."""
    return f"{name}-{evr.partition(':')[2] or evr}.{arch}.rpm"


def failure_reasons(output: str) -> dict[str, str]:
    """Package name → why rpm did not install it, from the tool's output."""
    reasons = {
        nevra_name(m["nevra"]): f"%{m['which']} scriptlet failed, {m['why'].strip()}"
        for m in _SCRIPTLET_FAILED.finditer(output)
    }
    for m in _INSTALL_FAILED.finditer(output):
        reasons.setdefault(nevra_name(m["rpm"] or m["zypper"]), "rpm could not install it")
    return reasons
