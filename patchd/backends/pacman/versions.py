"""pacman's version ordering (``alpm_pkg_vercmp``, what ``vercmp`` prints), in pure Python.

A version is ``[epoch:]version[-release]``. Epochs, versions and releases are each
compared with pacman's copy of ``rpmvercmp``, which differs from today's rpm: no ``~``
or ``^``, and two versions whose separators differ in length at the same place are
ordered by that length (``1.0`` < ``1..0``). The release counts only when both sides
have one, so ``1.0`` equals ``1.0-5``. No library on PyPI implements these rules
without libalpm (``rpm-vercmp`` follows rpm), so they are written out here and
property-tested against the ``vercmp`` program that pacman ships.
"""

from __future__ import annotations

MAX_VERSION_CHARS = 256  # pacman's versions are short; anything longer is not one


def compare(a: str, b: str) -> int:
    """<0, 0 or >0 as ``a`` sorts before, equal to or after ``b``.

    :class:`ValueError` for what cannot be a pacman version: empty, too long, or not
    printable ASCII (pacman's own result for other bytes depends on the C library).
    """
    _check(a)
    _check(b)
    if a == b:
        return 0
    epoch_a, version_a, release_a = _split(a)
    epoch_b, version_b, release_b = _split(b)
    result = rpmvercmp(epoch_a, epoch_b)
    if result == 0:
        result = rpmvercmp(version_a, version_b)
        if result == 0 and release_a is not None and release_b is not None:
            result = rpmvercmp(release_a, release_b)
    return result


def _check(version: str) -> None:
    if not version or len(version) > MAX_VERSION_CHARS:
        raise ValueError(f"not a pacman version: {version[:40]!r}")
    if not (version.isascii() and version.isprintable()):
        raise ValueError(f"not a pacman version (printable ASCII only): {version[:40]!r}")


def _split(evr: str) -> tuple[str, str, str | None]:
    """``epoch``, ``version``, ``release`` as libalpm's ``parseEVR`` finds them.

    The epoch is a run of leading digits followed by ``:`` (``0`` when absent or empty);
    the release is what follows the last ``-`` after those digits.
    """
    digits = 0
    while digits < len(evr) and _isdigit(evr[digits]):
        digits += 1
    dash = evr.rfind("-", digits)
    body_end = dash if dash >= 0 else len(evr)
    release = evr[dash + 1 :] if dash >= 0 else None
    if digits < len(evr) and evr[digits] == ":":
        epoch = evr[:digits] or "0"
        version = evr[digits + 1 : body_end]
    else:
        epoch = "0"
        version = evr[:body_end]
    return epoch, version, release


def _isdigit(c: str) -> bool:
    return "0" <= c <= "9"


def _isalpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _isalnum(c: str) -> bool:
    return _isdigit(c) or _isalpha(c)


def rpmvercmp(a: str, b: str) -> int:
    """Compare two version segments the way libalpm's ``rpmvercmp`` does (-1, 0, 1)."""
    if a == b:
        return 0
    one = two = 0  # start of the current segment in a and b
    end_one = end_two = 0  # end of the previous segment
    while one < len(a) and two < len(b):
        while one < len(a) and not _isalnum(a[one]):
            one += 1
        while two < len(b) and not _isalnum(b[two]):
            two += 1
        if one >= len(a) or two >= len(b):
            break
        # Separators of different lengths decide (pacman's own rule; rpm has none).
        if one - end_one != two - end_two:
            return -1 if one - end_one < two - end_two else 1
        numeric = _isdigit(a[one])
        end_one, end_two = _segment_end(a, one, numeric), _segment_end(b, two, numeric)
        result = _compare_segments(a[one:end_one], b[two:end_two], numeric)
        if result:
            return result
        one, two = end_one, end_two
    return _compare_rest(a[one:], b[two:])


def _segment_end(text: str, start: int, numeric: bool) -> int:
    same_kind = _isdigit if numeric else _isalpha
    end = start
    while end < len(text) and same_kind(text[end]):
        end += 1
    return end


def _compare_segments(left: str, right: str, numeric: bool) -> int:
    if not right:  # the right segment is of the other kind: numbers beat letters
        return 1 if numeric else -1
    if numeric:
        left, right = left.lstrip("0"), right.lstrip("0")
        if len(left) != len(right):
            return 1 if len(left) > len(right) else -1
    if left != right:
        return 1 if left > right else -1
    return 0


def _compare_rest(left: str, right: str) -> int:
    """All segments matched: what is left decides, and a letter never beats nothing."""
    if not left and not right:
        return 0
    if (not left and not _isalpha(right[0])) or (left and _isalpha(left[0])):
        return -1
    return 1
