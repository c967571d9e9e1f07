"""The .deb and .rpm that `make deb` / `make rpm` build: what they hold, that their Python is
their own, and what their maintainer scripts do.

Installing and running the .deb under a real systemd is tests/e2e's job; here each package is
unpacked and its Python run in a private mount namespace where the unpacked /opt is mounted
over /opt, so nothing on the host changes. The maintainer scripts run in a namespace of their
own too, with /run, /var/lib, /var/log and /etc/patchd on fresh tmpfs mounts and recording
stand-ins for systemctl and deb-systemd-helper first on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require
from tests.support.linuxpkg import BUILD, TOOLS, build_packages, package_test_version

pytestmark = [pytest.mark.slow, pytest.mark.root]

PROBE = r"""
import importlib.util, json, ssl, sys
import patchd
found = {}
for name in ("sqlite3", "lzma", "bz2", "zlib", "ctypes", "uuid", "readline", "yaml", "cryptography",
             "psutil", "watchdog", "requests", "pydantic", "defusedxml", "debian", "fastapi",
             "uvicorn", "sqlalchemy", "psycopg"):
    spec = importlib.util.find_spec(name)
    found[name] = spec.origin if spec else None
print(json.dumps({"prefix": sys.prefix, "path": sys.path, "patchd": patchd.__file__,
                  "version": patchd.__version__, "openssl": ssl.OPENSSL_VERSION, "found": found,
                  "flags": {"isolated": sys.flags.isolated}}))
"""


@pytest.fixture(scope="module")
def debs() -> dict[str, Path]:
    require(*TOOLS, root=True)
    return build_packages("deb", package_test_version())


@pytest.fixture(scope="module")
def rpms() -> dict[str, Path]:
    require(*TOOLS, root=True)
    return build_packages("rpm", package_test_version())


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300, **kwargs)  # type: ignore[call-overload, no-any-return]


def _deb_field(deb: Path, field: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), field]).stdout.strip()


def _unpack(package: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    if package.suffix == ".deb":
        _run(["dpkg-deb", "-x", str(package), str(into)])
    else:
        _run(["bsdtar", "-xf", str(package), "-C", str(into)])  # libarchive reads an RPM's payload


def _in_opt(
    tree: Path, argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a private mount namespace where ``tree``/opt is mounted over /opt."""
    script = 'mount --bind "$1/opt" /opt && shift && exec "$@"'
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(tree),
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


# --- what the packages hold ---------------------------------------------------------------------


def test_deb_control_names_the_version_and_only_c_libraries(debs: dict[str, Path]) -> None:
    agent, collector = debs["patchd"], debs["patchd-collector"]
    assert _deb_field(agent, "Package") == "patchd"
    assert _deb_field(agent, "Version") == package_test_version()
    assert _deb_field(agent, "Architecture") == "amd64"
    depends = [d.strip().split()[0] for d in _deb_field(agent, "Depends").split(",")]
    # dpkg-shlibdeps found the C libraries the bundled CPython links; nothing of Python's.
    assert "libc6" in depends
    assert "libssl3" in depends
    assert not [d for d in depends if d.startswith("python")], depends
    collector_depends = _deb_field(collector, "Depends")
    assert f"patchd (= {package_test_version()})" in collector_depends
    ctrl = Path(_run(["mktemp", "-d"]).stdout.strip())
    try:
        _run(["dpkg-deb", "-e", str(agent), str(ctrl / "DEBIAN")])
        assert (ctrl / "DEBIAN" / "conffiles").read_text().split() == ["/etc/patchd/agent.yaml"]
        for script in ("postinst", "prerm", "postrm"):
            assert (ctrl / "DEBIAN" / script).stat().st_mode & 0o111
            _run(["sh", "-n", str(ctrl / "DEBIAN" / script)])
    finally:
        shutil.rmtree(ctrl)


def _deb_listing(deb: Path) -> dict[str, str]:
    """{path: owner} of a .deb's data, paths without the leading '.'."""
    listing = {}
    for line in _run(["dpkg-deb", "-c", str(deb)]).stdout.splitlines():
        fields = line.split()
        if fields[5] == "./":
            continue
        path = fields[5][1:]
        listing[path.rstrip("/") or "/"] = fields[1]
        if fields[0].startswith("l"):
            listing[path] = f"{fields[1]} -> {fields[7]}"
    return listing


def test_deb_holds_python_launcher_units_docs_and_only_its_own_libraries(
    debs: dict[str, Path],
) -> None:
    agent = _deb_listing(debs["patchd"])
    collector = _deb_listing(debs["patchd-collector"])
    assert {owner.split(" ")[0] for owner in (*agent.values(), *collector.values())} == {
        "root/root"
    }
    for path in (
        "/opt/patchd/python/bin/python3.13",
        "/opt/patchd/bin/patchd",
        "/usr/lib/systemd/system/patchd-agent.service",
        "/etc/patchd/agent.yaml",
        "/usr/share/man/man8/patchd.8.gz",
        "/usr/share/man/man5/patchd-policy.5.gz",
        "/usr/share/bash-completion/completions/patchd",
        "/usr/share/zsh/vendor-completions/_patchd",
        "/usr/share/fish/vendor_completions.d/patchd.fish",
        "/usr/share/doc/patchd/copyright",
    ):
        assert path in agent, path
    assert agent["/usr/bin/patchd"] == "root/root -> /opt/patchd/bin/patchd"
    site = "/opt/patchd/python/lib/python3.13/site-packages"
    assert any(p.startswith(f"{site}/patchd/") for p in agent)
    assert any(p.startswith(f"{site}/cryptography/") for p in agent)
    # The collector's libraries are in the collector's package only, and the two never share a file.
    for library in ("fastapi", "uvicorn", "sqlalchemy", "psycopg"):
        assert not any(p.startswith(f"{site}/{library}/") for p in agent), library
        assert any(p.startswith(f"{site}/{library}/") for p in collector), library
    assert "/usr/lib/systemd/system/patchd-collector.service" in collector
    files_in_both = {
        p for p in set(agent) & set(collector) if not _is_dir_entry(p, agent, collector)
    }
    assert not files_in_both
    # Nothing an agent never uses rides along.
    for dropped in ("idlelib", "tkinter", "ensurepip", "test"):
        assert f"/opt/patchd/python/lib/python3.13/{dropped}" not in agent


def _is_dir_entry(path: str, *listings: dict[str, str]) -> bool:
    return any(other.startswith(path + "/") for listing in listings for other in listing)


def test_rpm_metadata_requires_c_libraries_and_provides_nothing_else(rpms: dict[str, Path]) -> None:
    agent, collector = rpms["patchd"], rpms["patchd-collector"]
    name_version = _run(["rpm", "-qp", "--qf", "%{NAME} %{VERSION}", str(agent)]).stdout
    assert name_version == f"patchd {package_test_version()}"
    requires = _run(["rpm", "-qp", "--requires", str(agent)]).stdout.splitlines()
    assert any(r.startswith("libssl.so.3") for r in requires), requires
    assert any(r.startswith("libc.so.6") for r in requires), requires
    assert not [r for r in requires if r.startswith(("python", "/opt/patchd"))], requires
    provides = _run(["rpm", "-qp", "--provides", str(agent)]).stdout.split("\n")
    assert [p for p in provides if p] == [
        f"patchd = {package_test_version()}-1",
        "patchd(x86-64) = " + f"{package_test_version()}-1",
    ]
    assert _run(["rpm", "-qcp", str(agent)]).stdout.split() == ["/etc/patchd/agent.yaml"]
    files = _run(["rpm", "-qlp", str(agent)]).stdout.splitlines()
    assert "/opt/patchd/python/bin/python3.13" in files
    assert "/usr/lib/systemd/system/patchd-agent.service" in files
    dump = {
        line.split()[0]: line.split()
        for line in _run(["rpm", "-qp", "--dump", str(agent)]).stdout.splitlines()
    }
    assert dump["/var/lib/patchd"][4] == "040700"
    assert dump["/var/lib/patchd/keys"][4] == "040700"
    collector_requires = _run(["rpm", "-qp", "--requires", str(collector)]).stdout.splitlines()
    assert f"patchd = {package_test_version()}-1" in collector_requires


# --- the bundled Python is the package's own ----------------------------------------------------


@pytest.fixture(params=["deb", "rpm"])
def unpacked(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    packages = request.getfixturevalue("debs" if request.param == "deb" else "rpms")
    _unpack(packages["patchd"], tmp_path / "agent")
    return tmp_path


def _probe(tree: Path, env: dict[str, str]) -> dict[str, object]:
    proc = _in_opt(tree, ["/opt/patchd/python/bin/python3.13", "-I", "-c", PROBE], env)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_bundled_python_ignores_the_environment_and_the_distribution(
    unpacked: Path, tmp_path: Path
) -> None:
    # A module named patchd on PYTHONPATH and in the user site must not be picked up.
    decoy = tmp_path / "decoy"
    (decoy / "patchd").mkdir(parents=True)
    (decoy / "patchd" / "__init__.py").write_text("__version__ = 'decoy'\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(decoy),
        "PYTHONHOME": "/usr",
        "HOME": str(decoy),
    }
    probe = _probe(unpacked / "agent", env)
    assert probe["prefix"] == "/opt/patchd/python"
    assert probe["version"] == package_test_version()
    assert str(probe["patchd"]).startswith(
        "/opt/patchd/python/lib/python3.13/site-packages/patchd/"
    )
    assert all(str(p).startswith("/opt/patchd/python/") for p in probe["path"]), probe["path"]  # type: ignore[attr-defined]
    found = probe["found"]
    assert isinstance(found, dict)
    for module in (
        "sqlite3",
        "lzma",
        "bz2",
        "zlib",
        "ctypes",
        "uuid",
        "yaml",
        "cryptography",
        "psutil",
        "watchdog",
    ):
        assert found[module] is not None, module
        assert not str(found[module]).startswith("/usr/"), found[module]
    for module in ("fastapi", "uvicorn", "sqlalchemy", "psycopg"):
        assert found[module] is None, f"the agent's package carries {module}"
    assert str(probe["openssl"]).startswith("OpenSSL 3.")


def test_launcher_runs_the_packaged_patchd(unpacked: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "/nonexistent"}
    version = _in_opt(unpacked / "agent", ["/opt/patchd/bin/patchd", "--version"], env)
    assert version.returncode == 0, version.stderr
    assert package_test_version() in version.stdout
    # The /usr/bin link leads to the same launcher.
    link = unpacked / "agent" / "usr" / "bin" / "patchd"
    assert os.readlink(link) == "/opt/patchd/bin/patchd"


def test_collector_package_completes_the_python(debs: dict[str, Path], tmp_path: Path) -> None:
    tree = tmp_path / "both"
    _unpack(debs["patchd"], tree)
    _unpack(debs["patchd-collector"], tree)
    probe = _probe(tree, {"PATH": "/usr/bin:/bin"})
    found = probe["found"]
    assert isinstance(found, dict)
    for module in ("fastapi", "uvicorn", "sqlalchemy", "psycopg"):
        assert str(found[module]).startswith("/opt/patchd/python/"), module
    help_text = _in_opt(tree, ["/opt/patchd/bin/patchd", "collector", "serve", "--help"])
    assert help_text.returncode == 0, help_text.stderr
    assert "--admin-token-file" in help_text.stdout


# --- maintainer scripts -------------------------------------------------------------------------

STAND_IN = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0") $1" in
"deb-systemd-helper --quiet") [ "$2" = was-enabled ] && exit 0 ;;
esac
exit 0
"""


def _run_script(
    script: Path, args: list[str], work: Path, systemd: bool = True
) -> tuple[list[str], Path]:
    """Run a maintainer script with fresh /run, /var/lib, /var/log; return (calls, the /var/lib view)."""
    bindir = work / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for tool in ("systemctl", "deb-systemd-helper", "deb-systemd-invoke"):
        (bindir / tool).write_text(STAND_IN)
        (bindir / tool).chmod(0o755)
    calls = work / "calls"
    calls.write_text("")
    keep = work / "varlib"
    keep.mkdir(exist_ok=True)
    setup = (
        'set -e; mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /var/log; mount --bind "$KEEP" /var/lib; '
        + ("mkdir -p /run/systemd/system; " if systemd else "")
        + 'exec "$@"'
    )
    env = {
        "PATH": f"{bindir}:/usr/sbin:/usr/bin:/sbin:/bin",
        "CALLS": str(calls),
        "KEEP": str(keep),
    }
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            setup,
            "sh",
            str(script),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return calls.read_text().splitlines(), keep


@pytest.fixture
def deb_scripts(debs: dict[str, Path], tmp_path: Path) -> Path:
    _run(["dpkg-deb", "-e", str(debs["patchd"]), str(tmp_path / "DEBIAN")])
    return tmp_path / "DEBIAN"


def test_deb_postinst_starts_on_install_and_restarts_without_blocking_on_upgrade(
    deb_scripts: Path, tmp_path: Path
) -> None:
    fresh, varlib = _run_script(deb_scripts / "postinst", ["configure", ""], tmp_path / "fresh")
    assert "deb-systemd-helper enable patchd-agent.service" in fresh
    assert "systemctl --system daemon-reload" in fresh
    assert "deb-systemd-invoke start patchd-agent.service" in fresh
    assert (varlib / "patchd" / "keys").is_dir()
    assert (varlib / "patchd").stat().st_mode & 0o777 == 0o700
    assert (varlib / "patchd" / "keys").stat().st_mode & 0o777 == 0o700

    # An upgrade may be the agent upgrading itself: a blocking restart would deadlock.
    upgrade, _ = _run_script(deb_scripts / "postinst", ["configure", "0.0.9"], tmp_path / "upgrade")
    assert "systemctl --no-block try-restart patchd-agent.service" in upgrade
    assert not [
        c for c in upgrade if "start" in c.split()[1:2] or c.startswith("deb-systemd-invoke")
    ]

    # Without a running systemd (a chroot, an image build) nothing is started.
    chroot, _ = _run_script(
        deb_scripts / "postinst", ["configure", ""], tmp_path / "chroot", systemd=False
    )
    assert not [c for c in chroot if c.startswith(("systemctl", "deb-systemd-invoke"))]


def test_deb_prerm_stops_only_on_removal_and_purge_removes_state(
    deb_scripts: Path, tmp_path: Path
) -> None:
    upgrade, _ = _run_script(deb_scripts / "prerm", ["upgrade", "0.2.0"], tmp_path / "upgrade")
    assert upgrade == []
    remove, _ = _run_script(deb_scripts / "prerm", ["remove"], tmp_path / "remove")
    assert "deb-systemd-invoke stop patchd-agent.service" in remove
    work = tmp_path / "purge"
    (work / "varlib" / "patchd" / "keys").mkdir(parents=True)
    (work / "varlib" / "other").mkdir()
    purge, varlib = _run_script(deb_scripts / "postrm", ["purge"], work)
    assert "deb-systemd-helper purge patchd-agent.service" in purge
    assert not (varlib / "patchd").exists()
    assert (varlib / "other").is_dir()  # nothing else goes


def _rpm_script(rpm: Path, tag: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    script = into / tag
    script.write_text(_run(["rpm", "-qp", "--qf", f"%{{{tag}}}", str(rpm)]).stdout)
    script.chmod(0o755)  # rpm runs scriptlets with /bin/sh
    return script


def test_rpm_scriptlets_preset_on_install_and_restart_without_blocking_on_upgrade(
    rpms: dict[str, Path], tmp_path: Path
) -> None:
    post = _rpm_script(rpms["patchd"], "POSTIN", tmp_path / "s")
    postun = _rpm_script(rpms["patchd"], "POSTUN", tmp_path / "s")
    preun = _rpm_script(rpms["patchd"], "PREUN", tmp_path / "s")
    install, varlib = _run_script(post, ["1"], tmp_path / "install")
    assert "systemctl --no-reload preset patchd-agent.service" in install
    assert (varlib / "patchd" / "keys").stat().st_mode & 0o777 == 0o700
    upgraded, _ = _run_script(postun, ["1"], tmp_path / "upgrade")
    assert "systemctl --no-block try-restart patchd-agent.service" in upgraded
    removed, _ = _run_script(postun, ["0"], tmp_path / "removed")
    assert not [c for c in removed if "try-restart" in c]
    kept, _ = _run_script(preun, ["1"], tmp_path / "preun-upgrade")
    assert kept == []
    erased, _ = _run_script(preun, ["0"], tmp_path / "preun-erase")
    assert "systemctl --no-reload disable --now patchd-agent.service" in erased


# --- bad input ------------------------------------------------------------------------------------


def test_bad_version_is_refused_in_one_line_and_builds_nothing(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, str(BUILD), "deb", "--version", "1.0; rm -rf /", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("build: error: version '1.0; rm -rf /' is not of the form")
    assert "Traceback" not in proc.stderr
    assert not out.exists()
