"""Debian version ordering (deb-version(7)), through python-debian."""

from __future__ import annotations


def compare(a: str, b: str) -> int:
    """<0, 0 or >0 as ``a`` sorts before, equal to or after ``b``; ValueError if invalid."""
    from debian.debian_support import Version

    left, right = Version(a), Version(b)
    return (left > right) - (left < right)
