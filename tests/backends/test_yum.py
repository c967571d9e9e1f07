"""The yum backend (yum 3, EL7) on yum's captured output (yum is not packaged for Debian).

The fixture is tests/conformance/offline_yum.py: a fake yum installation for the probe,
a recording fake of the process gateway answering with the capture, and a stand-in rpm
database. Every command line of a scan, an apply and a rollback is asserted, and the
advisories are read from yum's own cache layout (``/var/cache/yum/ARCH/RELEASE/ID``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.base import ProbeStatus
from patchd.backends.rpm import toolversion
from patchd.backends.rpm.failures import rpm_filename
from patchd.models import Classification, Severity
from patchd.transcript import Transcript
from tests.conformance import offline_yum
from tests.conformance.offline import OfflineFixture
from tests.conformance.offline_yum import ARCH, NAME, NEW, OLD, yum_prefix
from tests.conftest import require


@pytest.fixture
def fx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineFixture:
    return offline_yum.build(tmp_path, monkeypatch)


def test_every_command_line_of_a_scan_apply_and_rollback(
    fx: OfflineFixture, tmp_path: Path
) -> None:
    yum = yum_prefix(tmp_path / "root")
    probe = fx.backend.probe()
    assert (probe.status, probe.version) == (ProbeStatus.PRESENT, "3.4.3")
    (update,) = fx.backend.scan().updates
    change = update.change()
    keep = tmp_path / "keep"
    (source,) = fx.backend.prepare_rollback([change], keep, Transcript())
    assert fx.backend.apply([change], Transcript()).ok
    kept = {source.change.key: source.kept_file} if source.kept_file else {}
    assert fx.backend.rollback([change.reversed()], Transcript(), kept).ok
    assert [a for a in fx.commands.argvs if a[0] == "yum"] == [
        (*yum, "-C", "-q", "--setopt=skip_if_unavailable=True", "check-update"),
        (
            *yum,
            "reinstall",
            "--downloadonly",
            f"--downloaddir={keep}",
            "--setopt=strict=False",
            f"{NAME}-{OLD}.{ARCH}",
        ),
        (*yum, "upgrade", f"{NAME}-{NEW}.{ARCH}"),
        (*yum, "downgrade", str(keep / rpm_filename(NAME, OLD, ARCH))),
    ]
    assert fx.versions()[NAME] == OLD


def test_yum_is_absent_where_yum_is_dnf(
    fx: OfflineFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # EL8 and later: no yum module, and dnf on the PATH (this host's): dnf's backend manages it.
    require("dnf")
    monkeypatch.setitem(toolversion.MODULE_PATTERNS, "yum", (str(tmp_path / "none"),))
    probe = fx.backend.probe()
    assert probe.status is ProbeStatus.ABSENT
    assert "yum is dnf here" in probe.detail
    assert fx.commands.calls == []


UPDATEINFO = f"""<?xml version="1.0" encoding="UTF-8"?>
<updates>
  <update type="security" from="centos">
    <id>CESA-2016:0511</id>
    <severity>Critical</severity>
    <references>
      <reference type="cve" id="CVE-2016-0636" href="https://example.invalid/CVE-2016-0636"/>
    </references>
    <pkglist><collection>
      <package name="{NAME}" arch="{ARCH}" epoch="1" version="1.7.0.99" release="2.6.5.0.el6_7"/>
    </collection></pkglist>
  </update>
</updates>
"""
REPOMD = """<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo">
  <data type="updateinfo"><location href="repodata/abc-updateinfo.xml"/></data>
</repomd>
"""


def test_a_scan_classifies_from_yums_cached_updateinfo(fx: OfflineFixture, tmp_path: Path) -> None:
    cache = tmp_path / "root/var/cache/yum/x86_64/7/base"  # yum keeps the files side by side
    cache.mkdir(parents=True)
    (cache / "repomd.xml").write_text(REPOMD)
    (cache / "abc-updateinfo.xml").write_text(UPDATEINFO)
    (update,) = fx.backend.scan().updates
    assert (update.classification, update.severity, update.cves) == (
        Classification.SECURITY,
        Severity.CRITICAL,
        ("CVE-2016-0636",),
    )
    assert update.notes == ("advisories: CESA-2016:0511",)


def test_without_yums_cache_the_scan_says_so(fx: OfflineFixture) -> None:
    result = fx.backend.scan()
    (update,) = result.updates
    assert update.classification is Classification.OTHER
    assert any("yum has no cached metadata" in w for w in result.warnings)
