"""RPM version ordering (``rpmvercmp`` over epoch, version and release).

Through ``rpm-version`` (Python bindings of the Rust crate of the same name, whose
ordering is rpm's own: tilde, caret, epochs); the tests check it against the real rpm.
"""

from __future__ import annotations

MAX_VERSION_CHARS = 512  # rpm has no limit; a longer one is not a real version


def compare(a: str, b: str) -> int:
    """<0, 0 or >0 as ``a`` sorts before, equal to or after ``b``; ValueError if invalid.

    Versions are ``[epoch:]version[-release]``, as rpm, dnf and zypper print them.
    """
    from rpm_version import evr_compare

    for value in (a, b):
        _check(value)
    result: int = evr_compare(a, b)
    return result


def _check(value: str) -> None:
    # rpm itself refuses an empty version; whitespace or control characters never occur
    # in a real one and would make the ordering meaningless.
    if not value or len(value) > MAX_VERSION_CHARS:
        raise ValueError(f"invalid rpm version {value[:40]!r}")
    # (The only white space str.isprintable accepts is the ASCII space.)
    if not value.isprintable() or " " in value:
        raise ValueError(f"invalid rpm version {value[:40]!r}")
    epoch, sep, rest = value.partition(":")
    if sep and (not epoch.isdigit() or not rest):
        raise ValueError(f"invalid rpm version {value[:40]!r}: the epoch must be a number")


def evr(epoch: str | int | None, version: str, release: str) -> str:
    """``[epoch:]version-release``, leaving out a zero or missing epoch as rpm does."""
    e = str(epoch) if epoch not in (None, "", "0", 0, "(none)") else ""
    return (
        f"{e + ':' if e else ''}{version}-{release}"
        if release
        else f"{e + ':' if e else ''}{version}"
    )
