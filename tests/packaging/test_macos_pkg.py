"""The macOS package recipe (packaging/macos), as far as Linux can take it.

pkgbuild, productbuild, codesign and launchctl exist only on macOS. Here: every XML and
plist parses, every value agrees with patchd's own definitions (read from the code and
from the scripts themselves, not copied), the shell scripts pass ``sh -n``/``bash -n``
and shellcheck, and the installer scripts run for real — POSIX sh, real processes —
against a throwaway root and a stand-in ``launchctl`` that behaves like launchd's.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import defusedxml.ElementTree as SafeET
import pytest

from patchd.service.layout import LAUNCHD_LABEL, launchd_agent, service_file
from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]
MACOS = REPO / "packaging/macos"
SCRIPTS = MACOS / "scripts"
PINS = REPO / "packaging/python-pins"
RUN_TIMEOUT_S = 120
WAIT_POLLS = 600  # of 0.1 s: a freshly started process has forked its child
SHA256 = re.compile(r"[0-9a-f]{64}")


def packaged_plist() -> dict[str, object]:
    plist = plistlib.loads(service_file(f"{LAUNCHD_LABEL}.plist").encode())
    assert isinstance(plist, dict)
    return plist


def lib_value(name: str) -> str:
    """A variable of patchd-lib.sh, as sh evaluates it."""
    result = subprocess.run(
        ["sh", "-c", f'. "$0"; printf %s "${name}"', str(SCRIPTS / "patchd-lib.sh")],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    return result.stdout


def script_constant(path: Path, name: str) -> str:
    match = re.search(rf"^readonly {name}=(\S+)", path.read_text(), re.MULTILINE)
    assert match, f"{name} not in {path}"
    return match.group(1)


def pins() -> dict[str, tuple[str, str, str]]:
    table = {}
    for line in PINS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            platform, version, url, digest = line.split()
            table[platform] = (version, url, digest)
    return table


# -- the pinned Python ---------------------------------------------------------------


def test_every_pin_is_a_version_an_https_url_and_a_sha256() -> None:
    table = pins()
    assert {"macos-arm64", "windows-amd64"} <= table.keys()
    for platform, (version, url, digest) in table.items():
        assert re.fullmatch(r"3\.\d+\.\d+", version), platform
        assert url.startswith("https://"), platform
        assert version in url.replace("%2B", "+"), platform
        assert SHA256.fullmatch(digest), platform


def test_macos_python_is_a_relocatable_build_for_its_architecture() -> None:
    _version, url, _digest = pins()["macos-arm64"]
    assert "python-build-standalone" in url
    assert url.endswith("-aarch64-apple-darwin-install_only.tar.gz")


# -- paths, names and budgets agree with patchd/service ---------------------------------


def test_scripts_use_the_label_plist_and_prefix_of_the_layout() -> None:
    layout = launchd_agent()
    assert lib_value("PATCHD_LABEL") == LAUNCHD_LABEL == layout.unit
    assert PurePosixPath(lib_value("PATCHD_PLIST")) == PurePosixPath("/") / layout.definition
    program = packaged_plist()["ProgramArguments"]
    assert isinstance(program, list)
    assert program[0] == lib_value("PATCHD_PREFIX") + "/bin/patchd"
    assert script_constant(MACOS / "build-pkg.sh", "PREFIX") == lib_value("PATCHD_PREFIX")


def test_stop_budget_is_the_plists_exit_timeout() -> None:
    assert int(lib_value("PATCHD_EXIT_TIMEOUT_S")) == packaged_plist()["ExitTimeOut"]


def test_launcher_runs_the_bundled_python_isolated() -> None:
    text = (MACOS / "patchd.launcher").read_text()
    exec_line = next(line for line in text.splitlines() if line.startswith("exec "))
    assert exec_line.split()[1:5] == [
        lib_value("PATCHD_PREFIX") + "/python/bin/python3",
        "-I",
        "-m",
        "patchd",
    ]


def test_distribution_names_the_component_pkgbuild_makes() -> None:
    template = (MACOS / "distribution.xml.in").read_text()
    rendered = (
        template.replace("@VERSION@", "1.2.3")
        .replace("@ARCH@", "arm64")
        .replace("@COMPONENT@", "patchd-component.pkg")
    )
    assert "@" not in rendered.split("-->", 1)[1]  # every placeholder filled
    root = SafeET.fromstring(rendered.encode())
    identifier = script_constant(MACOS / "build-pkg.sh", "IDENTIFIER")
    refs = root.findall("pkg-ref")
    assert [ref.get("id") for ref in refs] == [identifier]
    assert refs[0].text == "patchd-component.pkg"
    assert refs[0].get("version") == "1.2.3"
    choice = root.find("choice")
    assert choice is not None
    assert [ref.get("id") for ref in choice.findall("pkg-ref")] == [identifier]
    outline = root.find("choices-outline/line")
    assert outline is not None
    assert outline.get("choice") == choice.get("id")
    options = root.find("options")
    assert options is not None
    assert options.get("hostArchitectures") == "arm64"
    assert options.get("customize") == "never"
    domains = root.find("domains")
    assert domains is not None
    assert domains.attrib == {
        "enable_localSystem": "true",
        "enable_anywhere": "false",
        "enable_currentUserHome": "false",
    }


def test_component_plist_relocates_no_bundle() -> None:
    with (MACOS / "component.plist").open("rb") as f:
        bundles = plistlib.load(f)
    assert isinstance(bundles, list)
    assert all(bundle["BundleIsRelocatable"] is False for bundle in bundles)


def test_entitlements_keep_library_validation_and_allow_no_jit() -> None:
    with (MACOS / "entitlements.plist").open("rb") as f:
        entitlements = plistlib.load(f)
    assert entitlements == {"com.apple.security.cs.allow-unsigned-executable-memory": True}


def test_truncated_xml_is_refused() -> None:
    """The XML check can fail."""
    text = (MACOS / "distribution.xml.in").read_text()
    with pytest.raises(SafeET.ParseError):
        SafeET.fromstring(text.replace("</installer-gui-script>", "").encode())


# -- shell syntax and lint ---------------------------------------------------------------

SH_SCRIPTS = [SCRIPTS / "preinstall", SCRIPTS / "postinstall", SCRIPTS / "patchd-lib.sh"]


@pytest.mark.parametrize("path", [*SH_SCRIPTS, MACOS / "patchd.launcher"], ids=lambda p: p.name)
def test_posix_script_parses(path: Path) -> None:
    subprocess.run(["sh", "-n", str(path)], check=True, timeout=RUN_TIMEOUT_S)


def test_build_script_parses() -> None:
    subprocess.run(["bash", "-n", str(MACOS / "build-pkg.sh")], check=True, timeout=RUN_TIMEOUT_S)


def shellcheck(*args: str) -> subprocess.CompletedProcess[str]:
    require("shellcheck")
    return subprocess.run(
        ["shellcheck", "--external-sources", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
        cwd=SCRIPTS,
    )


def test_scripts_pass_shellcheck() -> None:
    posix = shellcheck("--shell=sh", *(p.name for p in SH_SCRIPTS), str(MACOS / "patchd.launcher"))
    assert posix.returncode == 0, posix.stdout
    build = shellcheck(str(MACOS / "build-pkg.sh"))
    assert build.returncode == 0, build.stdout


def test_shellcheck_catches_a_fault(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nrm -rf $1/opt\n")
    result = shellcheck("--shell=sh", str(broken))
    assert result.returncode != 0
    assert "SC2086" in result.stdout


# -- the installer scripts, run for real --------------------------------------------------

FAKE_LAUNCHCTL = """#!/bin/sh
# launchd's behaviour, for the scripts: print says whether the job is loaded and its pid;
# bootout sends SIGTERM and unloads the job once the process has exited.
state="$FAKE_LAUNCHD"
echo "$*" >> "$state/calls"
case "$1" in
print)
	[ -f "$state/loaded" ] || exit 113
	printf 'system/org.patchd.agent = {\\n\\tstate = running\\n\\tpid = %s\\n}\\n' "$(cat "$state/pid")"
	;;
bootout)
	[ -f "$state/loaded" ] || exit 113
	pid=$(cat "$state/pid")
	kill -TERM "$pid"
	( while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; rm -f "$state/loaded" ) &
	;;
esac
exit 0
"""

# An agent that, told to stop, first finishes the step it is in (its "transaction").
AGENT = """#!/bin/sh
trap 'echo finishing > "$1/step"; sleep 1; echo finished > "$1/step"; exit 0' TERM
while :; do sleep 1; done
"""

# An agent in a self-upgrade: its child is the macOS `installer` command.
SELF_UPGRADING_AGENT = """#!/bin/sh
"$(dirname "$0")/installer" &
wait
"""


@pytest.fixture
def launchd(tmp_path: Path) -> dict[str, str]:
    """An environment whose `launchctl` is the stand-in, with its state in tmp_path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "launchctl"
    fake.write_text(FAKE_LAUNCHCTL)
    fake.chmod(0o755)
    state = tmp_path / "launchd"
    state.mkdir()
    (state / "calls").touch()
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LAUNCHD": str(state),
        "PATCHD_POLL_S": "1",
    }


def start_detached(script: Path, *args: str) -> int:
    """Start ``script`` as an orphan (reaped by init, so it does not linger as a zombie)."""
    result = subprocess.run(
        ["sh", "-c", 'nohup "$@" >/dev/null 2>&1 & echo $!', "sh", str(script), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    return int(result.stdout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


def children(pid: int) -> list[int]:
    listing = subprocess.run(
        ["pgrep", "-P", str(pid)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    return [int(child) for child in listing.stdout.split()]


def wait_for_child(pid: int, name: str) -> bool:
    """Whether ``pid`` has started a child called ``name`` (polled, at most WAIT_POLLS times)."""
    for _ in range(WAIT_POLLS):
        if any(Path(f"/proc/{child}/comm").read_text().strip() == name for child in children(pid)):
            return True
        time.sleep(0.1)
    return False


def run_script(name: str, target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SCRIPTS / name), "/tmp/patchd.pkg", "/", target, "/"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=env,
        check=False,
    )


def load_agent(state: Path, script_text: str, tmp_path: Path, name: str = "agent") -> int:
    agent = tmp_path / name
    agent.write_text(script_text)
    agent.chmod(0o755)
    pid = start_detached(agent, str(tmp_path))
    (state / "pid").write_text(str(pid))
    (state / "loaded").touch()
    return pid


def test_preinstall_stops_the_agent_and_waits_for_its_step(
    launchd: dict[str, str], tmp_path: Path
) -> None:
    state = Path(launchd["FAKE_LAUNCHD"])
    pid = load_agent(state, AGENT, tmp_path)
    result = run_script("preinstall", "/", launchd)
    assert result.returncode == 0, result.stderr
    assert "bootout system/org.patchd.agent" in (state / "calls").read_text()
    # It returned only after the agent had finished its step and launchd had unloaded it.
    assert (tmp_path / "step").read_text() == "finished\n"
    assert not (state / "loaded").exists()
    assert not alive(pid)


def test_preinstall_leaves_a_self_upgrading_agent_running(
    launchd: dict[str, str], tmp_path: Path
) -> None:
    state = Path(launchd["FAKE_LAUNCHD"])
    installer = tmp_path / "installer"
    # A shell loop, not `exec sleep`, so the process keeps the name "installer".
    installer.write_text("#!/bin/sh\nwhile :; do sleep 1; done\n")
    installer.chmod(0o755)
    pid = load_agent(state, SELF_UPGRADING_AGENT, tmp_path)
    try:
        assert wait_for_child(pid, "installer")
        result = run_script("preinstall", "/", launchd)
        assert result.returncode == 0, result.stderr
        assert "is running this installation" in result.stderr
        assert "bootout" not in (state / "calls").read_text()
        assert alive(pid)
    finally:
        for process in [pid, *children(pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process, signal.SIGKILL)


def test_preinstall_with_no_loaded_agent_stops_nothing(launchd: dict[str, str]) -> None:
    result = run_script("preinstall", "/", launchd)
    assert result.returncode == 0, result.stderr
    assert (
        Path(launchd["FAKE_LAUNCHD"]) / "calls"
    ).read_text() == "print system/org.patchd.agent\n"


def test_waiting_for_the_unload_is_bounded(launchd: dict[str, str], tmp_path: Path) -> None:
    (Path(launchd["FAKE_LAUNCHD"]) / "loaded").touch()
    (Path(launchd["FAKE_LAUNCHD"]) / "pid").write_text("1")
    result = subprocess.run(
        ["sh", "-c", '. "$0"; wait_unloaded 0', str(SCRIPTS / "patchd-lib.sh")],
        env=launchd,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 1


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A target volume holding the package's payload: /opt/patchd/bin/patchd runs this patchd."""
    root = tmp_path / "volume"
    launcher = root / "opt/patchd/bin/patchd"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m patchd "$@"\n')
    launcher.chmod(0o755)
    return root


def test_postinstall_on_another_volume_lays_down_the_layout_without_launchctl(
    launchd: dict[str, str], volume: Path
) -> None:
    for _ in range(2):  # a reinstall changes nothing
        result = run_script("postinstall", str(volume), launchd)
        assert result.returncode == 0, result.stderr
        for entry in launchd_agent().entries:
            path = volume / entry.path
            assert path.exists(), path
            assert path.stat().st_mode & 0o7777 == entry.mode, path
            if entry.content is not None:
                assert path.read_text() == entry.content
    assert (Path(launchd["FAKE_LAUNCHD"]) / "calls").read_text() == ""


def test_preinstall_on_another_volume_touches_nothing(
    launchd: dict[str, str], volume: Path
) -> None:
    before = sorted(p.relative_to(volume) for p in volume.rglob("*"))
    result = run_script("preinstall", str(volume), launchd)
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(volume) for p in volume.rglob("*")) == before
    assert (Path(launchd["FAKE_LAUNCHD"]) / "calls").read_text() == ""


def test_postinstall_failure_is_reported(launchd: dict[str, str], volume: Path) -> None:
    """A path in the way makes `patchd service install` refuse; the script fails with it."""
    (volume / "Library/LaunchDaemons/org.patchd.agent.plist").mkdir(parents=True)
    result = run_script("postinstall", str(volume), launchd)
    assert result.returncode != 0
    assert not (volume / "etc/patchd").exists()
