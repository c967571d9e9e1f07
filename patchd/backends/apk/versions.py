"""apk-tools' version order, so the policy can compare Alpine versions without apk.

A port of apk-tools 2's ``version.c`` (the Gentoo-style grammar
``{digit}{.digit}...{letter}{_suffix{#}}...{-r#}``): numeric components compare as
numbers, a component with leading zeros ranks below any without, one lower-case letter
may follow the digits, ``_alpha`` < ``_beta`` < ``_pre`` < ``_rc`` rank below the bare
version and ``_cvs`` … ``_p`` above it, and ``-rN`` is the package revision.
"""

from __future__ import annotations

from enum import IntEnum

_PRE_SUFFIXES = ("alpha", "beta", "pre", "rc")  # values -4 .. -1: before the release
_POST_SUFFIXES = ("cvs", "svn", "git", "hg", "p")  # values 0 .. 4: after it
MAX_VERSION_CHARS = 256  # longer strings are not versions apk would write


class _Token(IntEnum):
    INVALID = -1
    DIGIT_OR_ZERO = 0
    DIGIT = 1
    LETTER = 2
    SUFFIX = 3
    SUFFIX_NO = 4
    REVISION_NO = 5
    END = 6


class _Reader:
    """Walks one version string token by token, as apk-tools' ``get_token`` does."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_VERSION_CHARS:
            raise ValueError(f"version longer than {MAX_VERSION_CHARS} characters")
        self.text = text
        self.pos = 0
        self.type = _Token.DIGIT

    def _left(self) -> int:
        return len(self.text) - self.pos

    def _next_type(self) -> None:
        kind = self.type
        char = self.text[self.pos] if self._left() > 0 else ""
        new = _Token.INVALID
        if not char:
            new = _Token.END
        elif kind in (_Token.DIGIT, _Token.DIGIT_OR_ZERO) and char.islower():
            new = _Token.LETTER
        elif kind is _Token.LETTER and char.isdigit():
            new = _Token.DIGIT
        elif kind is _Token.SUFFIX and char.isdigit():
            new = _Token.SUFFIX_NO
        else:
            if char == ".":
                new = _Token.DIGIT_OR_ZERO
            elif char == "_":
                new = _Token.SUFFIX
            elif char == "-" and self._left() > 1 and self.text[self.pos + 1] == "r":
                new = _Token.REVISION_NO
                self.pos += 1
            self.pos += 1
        allowed_back = (
            (new is _Token.DIGIT_OR_ZERO and kind is _Token.DIGIT)
            or (new is _Token.SUFFIX and kind is _Token.SUFFIX_NO)
            or (new is _Token.DIGIT and kind is _Token.LETTER)
        )
        if new < kind and not allowed_back:
            new = _Token.INVALID
        self.type = new

    def token(self) -> int:
        """The value of the current token; moves :attr:`type` on to the next one."""
        if self._left() <= 0:
            self.type = _Token.END
            return 0
        start, value, forced = self.pos, 0, None
        kind = self.type
        if kind is _Token.DIGIT_OR_ZERO and self.text[start] == "0":
            end = start
            while end < len(self.text) and self.text[end] == "0":
                end += 1
            value, forced = -(end - start), _Token.DIGIT
        elif kind in (
            _Token.DIGIT_OR_ZERO,
            _Token.DIGIT,
            _Token.SUFFIX_NO,
            _Token.REVISION_NO,
        ):
            end = start
            while end < len(self.text) and self.text[end].isdigit():
                end += 1
            value = int(self.text[start:end] or "0")
        elif kind is _Token.LETTER:
            end, value = start + 1, ord(self.text[start])
        elif kind is _Token.SUFFIX:
            value, end = _suffix(self.text, start)
            if end < 0:
                self.type = _Token.INVALID
                return -1
        else:
            self.type = _Token.INVALID
            return -1
        self.pos = end
        if self._left() == 0:
            self.type = _Token.END
        elif forced is not None:
            self.type = forced
        else:
            self._next_type()
        return value


def _suffix(text: str, start: int) -> tuple[int, int]:
    """Value and end of the suffix word at ``start``; end -1 if it is not one apk knows."""
    for index, word in enumerate(_PRE_SUFFIXES):
        if text.startswith(word, start):
            return index - len(_PRE_SUFFIXES), start + len(word)
    for index, word in enumerate(_POST_SUFFIXES):
        if text.startswith(word, start):
            return index, start + len(word)
    return -1, -1


def is_valid(version: str) -> bool:
    """Whether apk-tools would accept ``version`` (``apk_version_validate``)."""
    reader = _Reader(version)
    while reader.type not in (_Token.END, _Token.INVALID):
        reader.token()
    return reader.type is _Token.END


def compare(a: str, b: str) -> int:
    """<0, 0 or >0 as apk orders versions ``a`` and ``b``.

    :class:`ValueError` for a string apk-tools would reject as a version, so a policy
    never orders garbage.
    """
    for version in (a, b):
        if not is_valid(version):
            raise ValueError(f"not an apk version: {version!r}")
    ra, rb = _Reader(a), _Reader(b)
    av = bv = 0
    while ra.type == rb.type and ra.type not in (_Token.END, _Token.INVALID) and av == bv:
        av, bv = ra.token(), rb.token()
    if av != bv:
        return -1 if av < bv else 1
    return 0 if ra.type == rb.type else _longer_order(ra, rb)


def _longer_order(ra: _Reader, rb: _Reader) -> int:
    """Equal so far: the longer version is newer, unless what follows is a pre-release."""
    if ra.type is _Token.SUFFIX and _peek(ra) < 0:
        return -1
    if rb.type is _Token.SUFFIX and _peek(rb) < 0:
        return 1
    return (ra.type < rb.type) - (ra.type > rb.type)


def _peek(reader: _Reader) -> int:
    copy = _Reader(reader.text)
    copy.pos, copy.type = reader.pos, reader.type
    return copy.token()
