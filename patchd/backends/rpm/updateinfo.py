"""Advisories from a repository's ``updateinfo.xml``, as dnf and zypper read them.

The format is libsolv's (``ext/repo_updateinfoxml.c``): ``<update type=…>`` with an
``<id>``, a ``<severity>``, ``<references>`` (CVE ids are references of type ``cve``) and
a ``<pkglist>`` of packages, each with an optional ``<reboot_suggested>``. An advisory
applies to an installed package older than a package it lists, as libsolv's generated
conflicts say. The file is untrusted input: it is parsed by defusedxml (no DTDs, no
entities, so no entity-expansion bombs), streamed, and capped in size and counts.

Repositories compress it with gzip, bzip2, xz or zstd, and Fedora's also offer it as a
zchunk file (``updateinfo_zck`` in ``repomd.xml``), the only form dnf fetches with its
default ``zchunk=True``. patchd reads that with libzck, the library dnf's downloader
(librepo) reads it with, so it is on every system whose dnf fetched one.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from patchd import process
from patchd.errors import PatchdError

if TYPE_CHECKING:
    import ctypes

log = logging.getLogger(__name__)

MAX_XML_BYTES = 1024 * 1024 * 1024  # decompressed; Fedora's is ~60 MiB, RHEL's ~250 MiB
MAX_ADVISORIES = 200_000
MAX_PACKAGES_PER_ADVISORY = 50_000
MAX_REFERENCES_PER_ADVISORY = 5_000
MAX_REPOMD_BYTES = 1024 * 1024
DECOMPRESS_TIMEOUT_S = 300.0
ZCK_LIBRARY = "libzck.so.1"  # zchunk-libs (Fedora), libzck1 (Debian)
MAX_ZCK_BYTES = 256 * 1024 * 1024  # compressed; Fedora's updateinfo.xml.zck is ~10 MiB
ZCK_LOG_NONE = 4  # zck_log_type: libzck writes nothing to stderr; errors are asked for
READ_CHUNK_BYTES = 65536
UPDATEINFO_TYPES = ("updateinfo", "updateinfo_zck")  # in order of preference
_TRUE = ("t", "T", "1")  # libsolv: the first character decides


@dataclass(frozen=True)
class AdvisoryPackage:
    name: str
    arch: str
    evr: str
    reboot_suggested: bool = False


@dataclass(frozen=True)
class RepoAdvisory:
    """One advisory of a repository's updateinfo.xml."""

    id: str
    type: str  # security, bugfix, enhancement, newpackage (RHEL); recommended, optional (SUSE)
    severity: str
    cves: tuple[str, ...]
    packages: tuple[AdvisoryPackage, ...]


class UpdateinfoError(Exception):
    """The file is not a readable updateinfo.xml (or exceeds patchd's limits)."""


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Capped:
    """A binary stream that fails once more than ``limit`` bytes were read."""

    def __init__(self, stream: _Readable, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(READ_CHUNK_BYTES if size is None or size < 0 else size)
        self._left -= len(data)
        if self._left < 0:
            raise UpdateinfoError(f"updateinfo.xml is larger than {self._limit} bytes")
        return data


@functools.cache
def _libzck() -> ctypes.CDLL:
    """libzck, loaded once, with the prototypes of the functions patchd calls."""
    import ctypes

    try:
        lib = ctypes.CDLL(ZCK_LIBRARY)
    except OSError:
        raise UpdateinfoError(
            f"it is a zchunk file and {ZCK_LIBRARY} (zchunk-libs) is not installed"
        ) from None
    ctx = ctypes.c_void_p
    lib.zck_create.argtypes, lib.zck_create.restype = [], ctx
    lib.zck_init_read.argtypes, lib.zck_init_read.restype = [ctx, ctypes.c_int], ctypes.c_bool
    lib.zck_read.argtypes = [ctx, ctypes.c_char_p, ctypes.c_size_t]
    lib.zck_read.restype = ctypes.c_ssize_t
    lib.zck_get_error.argtypes, lib.zck_get_error.restype = [ctx], ctypes.c_char_p
    lib.zck_free.argtypes, lib.zck_free.restype = [ctypes.POINTER(ctx)], None
    lib.zck_set_log_level.argtypes, lib.zck_set_log_level.restype = [ctypes.c_int], None
    lib.zck_set_log_level(ZCK_LOG_NONE)
    return lib


class _Zchunk:
    """A zchunk file's data, decompressed by libzck, which checks each chunk's digest.

    The digests are in the file's own header: they catch damage, not forgery. The file
    is as trustworthy as dnf made it, which checked it against ``repomd.xml`` before
    keeping it, and parsed it with the same library.
    """

    def __init__(self, path: Path) -> None:
        self._lib = _libzck()
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        size = os.fstat(self._fd).st_size
        if size > MAX_ZCK_BYTES:
            os.close(self._fd)
            raise UpdateinfoError(f"the zchunk file is larger than {MAX_ZCK_BYTES} bytes")
        self._ctx = self._lib.zck_create()
        if not self._ctx or not self._lib.zck_init_read(self._ctx, self._fd):
            problem = self._error()
            self.close()
            raise UpdateinfoError(f"not a readable zchunk file: {problem}")

    def read(self, size: int = -1, /) -> bytes:
        import ctypes

        size = READ_CHUNK_BYTES if size < 0 else size
        buffer = ctypes.create_string_buffer(size)
        count = self._lib.zck_read(self._ctx, buffer, size)
        if count < 0:
            raise UpdateinfoError(f"zchunk data unreadable: {self._error()}")
        return buffer.raw[:count]

    def _error(self) -> str:
        message = self._lib.zck_get_error(self._ctx) if self._ctx else None
        return (message or b"libzck says nothing more").decode("utf-8", "replace").strip()

    def close(self) -> None:
        import ctypes

        if self._ctx:
            self._lib.zck_free(ctypes.byref(ctypes.c_void_p(self._ctx)))
            self._ctx = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@contextmanager
def open_metadata(path: Path, limit: int = MAX_XML_BYTES) -> Iterator[_Capped]:
    """``path`` decompressed by its suffix (.gz, .bz2, .xz, .zst, .zck), capped at ``limit``."""
    import bz2  # the decompressors cost ~10 ms to import: only when a file is read
    import gzip
    import lzma

    suffix = path.suffix
    if suffix == ".zck":
        zchunk = _Zchunk(path)
        try:
            yield _Capped(zchunk, limit)
        finally:
            zchunk.close()
        return
    if suffix == ".zst":  # no zstd in Python 3.11's standard library: the zstd tool
        with process.stream_stdout(
            ["zstd", "-dcq", str(path)], timeout_s=DECOMPRESS_TIMEOUT_S
        ) as c:
            yield _Capped(c.stdout, limit)
        return
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix, open)
    with opener(path, "rb") as f:  # type: ignore[operator]
        yield _Capped(f, limit)


def _true(text: str | None) -> bool:
    """libsolv's reading of a flag: its first character is T, t or 1 (empty is false)."""
    return (text or "").strip()[:1] in _TRUE


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _evr_of(attrib: dict[str, str]) -> str:
    from patchd.backends.rpm.versions import evr

    return evr(attrib.get("epoch"), attrib.get("version", ""), attrib.get("release", ""))


def parse_updateinfo(
    stream: IO[bytes] | _Capped, wanted: frozenset[str] | None = None
) -> list[RepoAdvisory]:
    """Every advisory in an updateinfo.xml stream.

    With ``wanted``, only packages of those names are kept (and advisories with none of
    them dropped): a scan cares about installed packages only. Raises
    :class:`UpdateinfoError` for malformed XML, forbidden constructs or too much data.
    """
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import iterparse

    advisories: list[RepoAdvisory] = []
    try:
        for _event, element in iterparse(stream, events=("end",)):
            if _local(element.tag) != "update":
                continue
            advisory = _advisory(element, wanted)
            element.clear()
            if advisory is None:
                continue
            advisories.append(advisory)
            if len(advisories) > MAX_ADVISORIES:
                raise UpdateinfoError(f"more than {MAX_ADVISORIES} advisories")
    except (ParseError, DefusedXmlException) as e:
        raise UpdateinfoError(f"not a valid updateinfo.xml: {e}") from None
    return advisories


def _advisory(update: object, wanted: frozenset[str] | None) -> RepoAdvisory | None:
    from xml.etree.ElementTree import Element

    assert isinstance(update, Element)
    advisory_id = severity = ""
    cves: list[str] = []
    packages: list[AdvisoryPackage] = []
    # A record-level flag (newer libsolv, createrepo_c) suggests a reboot for every package.
    record_reboot = any(_local(c.tag) == "reboot_suggested" and _true(c.text) for c in update)
    for child in update.iter():
        tag = _local(child.tag)
        if tag == "id":
            advisory_id = (child.text or "").strip()
        elif tag == "severity":
            severity = (child.text or "").strip()
        elif tag == "reference" and child.get("type") == "cve" and child.get("id"):
            if len(cves) < MAX_REFERENCES_PER_ADVISORY:
                cves.append(child.get("id", "").strip())
        elif tag == "package" and child.get("name"):
            name = child.get("name", "")
            if wanted is not None and name not in wanted:
                continue
            if len(packages) >= MAX_PACKAGES_PER_ADVISORY:
                raise UpdateinfoError(f"advisory {advisory_id} lists too many packages")
            reboot = record_reboot or any(
                _local(c.tag) == "reboot_suggested" and _true(c.text) for c in child
            )
            packages.append(
                AdvisoryPackage(
                    name, child.get("arch", "noarch"), _evr_of(dict(child.attrib)), reboot
                )
            )
    if not advisory_id or not packages:
        return None
    return RepoAdvisory(
        id=advisory_id,
        type=update.get("type", "").strip().lower(),
        severity=severity,
        cves=tuple(dict.fromkeys(cves)),
        packages=tuple(packages),
    )


def updateinfo_location(repodata_dir: Path) -> Path | None:
    """The updateinfo file a ``repomd.xml`` in ``repodata_dir`` names, if any and present.

    The plain (compressed) form is preferred; the zchunk form where only it was fetched.
    """
    for href in _updateinfo_hrefs(repodata_dir / "repomd.xml"):
        # The href is relative to the repository; never follow it elsewhere.
        if ".." in href.parts or href.is_absolute() or not href.name:
            continue
        # dnf keeps the repository's layout; yum keeps the files beside repomd.xml.
        for candidate in (repodata_dir.parent / href, repodata_dir / href.name):
            if candidate.is_file():
                return candidate
    return None


def _updateinfo_hrefs(repomd: Path) -> list[Path]:
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        with repomd.open("rb") as f:
            data = f.read(MAX_REPOMD_BYTES + 1)
        if len(data) > MAX_REPOMD_BYTES:
            raise UpdateinfoError(f"larger than {MAX_REPOMD_BYTES} bytes")
        root = fromstring(data)
    except (OSError, ParseError, DefusedXmlException, UpdateinfoError) as e:
        log.warning("%s not read (%s); its advisories are ignored", repomd, e)
        return []
    hrefs: dict[str, Path] = {}
    for data_element in root:
        kind = data_element.get("type", "")
        if _local(data_element.tag) != "data" or kind not in UPDATEINFO_TYPES:
            continue
        for location in data_element:
            if _local(location.tag) == "location" and kind not in hrefs:
                hrefs[kind] = Path(location.get("href", ""))
    return [hrefs[kind] for kind in UPDATEINFO_TYPES if kind in hrefs]


def read_updateinfo(path: Path, wanted: frozenset[str] | None = None) -> list[RepoAdvisory]:
    """Advisories of one file; an unreadable one is logged and gives none."""
    import lzma

    try:
        with open_metadata(path) as stream:
            return parse_updateinfo(stream, wanted)
    except (OSError, EOFError, lzma.LZMAError, UpdateinfoError, PatchdError) as e:
        log.warning("advisories in %s not read: %s", path, e)
        return []
