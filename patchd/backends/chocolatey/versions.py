"""Chocolatey's version ordering: NuGet's (SemVer 2 with up to four numeric parts).

``1.2.3.4-beta.1``: numbers compared numerically (missing parts are 0, so ``1.2`` equals
``1.2.0.0``), a release sorts after its pre-releases, pre-release labels compare part by
part (numeric parts numerically and before alphanumeric ones), build metadata after
``+`` is ignored.
"""

from __future__ import annotations

import re

_VERSION = re.compile(
    r"^v?(?P<nums>\d+(?:\.\d+){0,3})(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)


def _parse(text: str) -> tuple[tuple[int, ...], tuple[tuple[int, int | str], ...] | None]:
    match = _VERSION.match(text.strip())
    if match is None:
        raise ValueError(f"not a Chocolatey (NuGet) version: {text!r}")
    nums = tuple(int(n) for n in match["nums"].split("."))
    nums += (0,) * (4 - len(nums))
    pre = match["pre"]
    if pre is None:
        return nums, None
    parts = tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in pre.split("."))
    return nums, parts


def compare(a: str, b: str) -> int:
    """<0, 0 or >0 as ``a`` sorts before, equal to or after ``b``; ValueError if invalid."""
    (left_nums, left_pre), (right_nums, right_pre) = _parse(a), _parse(b)
    if left_nums != right_nums:
        return -1 if left_nums < right_nums else 1
    if left_pre == right_pre:
        return 0
    if left_pre is None:
        return 1  # a release sorts after its pre-releases
    if right_pre is None:
        return -1
    return -1 if left_pre < right_pre else 1
