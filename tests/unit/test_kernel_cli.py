"""The kernel check as users run it: the standalone script (stdlib only) and `doit check:kernel`."""
from __future__ import annotations

import ast
import gzip
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import builders.kernel_check
from builders.recipe import load_all

SCRIPT = Path(builders.kernel_check.__file__)
REPO = SCRIPT.parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "kernel"
PI4 = FIXTURES / "rpi4-bcm2711-5.4.config"
DEBIAN = FIXTURES / "debian-bookworm-arm64-6.1.config"
PI5 = FIXTURES / "rpi5-bcm2712-6.12.config"
PI_BOOT = FIXTURES / "pi"
PROBLEMS = ("missing", "disabled", "mismatch")


def standalone(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python3 -I -S kernel_check.py ...`: isolated and without site-packages, so only the stdlib imports."""
    return subprocess.run([sys.executable, "-I", "-S", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def truncated_gzip(tmp_path: Path) -> Path:
    whole = gzip.compress(DEBIAN.read_bytes())
    path = tmp_path / "config.gz"
    path.write_bytes(whole[:100])
    return path


# ---------------------------------------------------------------- exit codes


@pytest.mark.parametrize("config, version, code", [
    (DEBIAN, "1.18.0", 0),
    (PI4, "1.18.6", 0),
    (PI4, "1.18.0", 1),
    (PI5, "1.20.9", 0),     # 16K pages warn, never fail
    (PI5, "1.18.0", 1),
    (PI4, "1.18.0-rc1", 1),
    (FIXTURES / "does-not-exist.config", "1.18.6", 2),
    (FIXTURES / "empty.config", "1.18.6", 2),
    (FIXTURES / "raspberrypi-firmware-config.txt", "1.18.6", 2),
])
def test_standalone_exit_codes(config, version, code):
    result = standalone("--config", str(config), "--crio-version", version)
    assert result.returncode == code, result.stderr
    if code == 2:
        assert result.stderr.startswith("error: cannot check: " + str(config))
    else:
        assert result.stdout.splitlines()[-1].startswith("NOT READY" if code else "ready")


def test_standalone_truncated_gzip_exits_2(tmp_path):
    result = standalone("--config", str(truncated_gzip(tmp_path)), "--crio-version", "1.18.6")
    assert result.returncode == 2 and "truncated or corrupt gzip" in result.stderr


def test_standalone_refuses_a_bad_version_with_exit_2():
    result = standalone("--config", str(DEBIAN), "--crio-version", "1.18")
    assert result.returncode == 2 and "is not a CRI-O version" in result.stderr


# ---------------------------------------------------------------- --json and --quiet-warn


def test_standalone_json_shape():
    result = standalone("--config", str(PI4), "--crio-version", "1.18.0", "--json")
    data = json.loads(result.stdout)
    assert set(data) == {"crio_version", "config_source", "verdict", "exit_code", "error", "hint", "findings"}
    assert (data["verdict"], data["exit_code"], result.returncode) == ("required-missing", 1, 1)
    assert data["config_source"] == str(PI4)
    assert set(data["findings"][0]) == {"name", "group", "required", "status", "detail", "purpose", "hint", "blocking"}
    statuses = {f["status"] for f in data["findings"]}
    assert statuses <= {"enabled", "module", "missing"}  # a config file alone has no live findings


def test_standalone_json_for_an_unreadable_config_carries_the_error():
    result = standalone("--config", str(FIXTURES / "empty.config"), "--json")
    data = json.loads(result.stdout)
    assert (result.returncode, data["verdict"], data["findings"]) == (2, "no-config", [])
    assert data["error"].endswith("is empty") and "/proc/config.gz" in data["hint"]


@pytest.mark.parametrize("config, warned", [
    (PI4, ["CONFIG_HUGETLBFS", "CONFIG_CGROUP_HUGETLB"]),
    (PI5, ["CONFIG_HUGETLBFS", "CONFIG_CGROUP_HUGETLB", "page size is 16K (CONFIG_ARM64_16K_PAGES=y)"]),
    (DEBIAN, []),
    (FIXTURES / "empty.config", ["could not check"]),
])
def test_quiet_warn_for_postinst_warns_and_never_fails(config, warned):
    result = standalone("--config", str(config), "--crio-version", "1.18.0", "--quiet-warn")
    assert result.returncode == 0 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == len(warned)
    for line, word in zip(lines, warned):
        assert line.startswith("warning: ") and word in line


def fake_crio(tmp_path: Path, version_output: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    crio = bin_dir / "crio"
    crio.write_text(f"#!/bin/sh\nprintf '{version_output}'\n")
    crio.chmod(crio.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


@pytest.mark.parametrize("output", ["crio version 1.18.0\\n", "Version:       1.18.0\\nGitCommit: abc\\n"])
def test_without_crio_version_the_installed_crio_decides(tmp_path, output):
    result = standalone("--config", str(PI4), "--json", env=fake_crio(tmp_path, output))
    data = json.loads(result.stdout)
    assert (data["crio_version"], result.returncode) == ("1.18.0", 1)


def test_without_crio_anywhere_any_fixed_release_is_assumed(tmp_path):
    result = standalone("--config", str(PI4), "--json", env={"PATH": str(tmp_path)})
    data = json.loads(result.stdout)
    assert (data["crio_version"], result.returncode) == (None, 0)
    hugetlb = next(f for f in data["findings"] if f["name"] == "CONFIG_CGROUP_HUGETLB")
    assert hugetlb["required"] is False and "fixed in 1.18.1" in hugetlb["hint"]


def test_standalone_pi5_config_says_16k_and_how_to_get_4k():
    result = standalone("--config", str(PI5), "--crio-version", "1.20.9")
    assert result.returncode == 0, result.stderr
    page = next(line for line in result.stdout.splitlines() if line.split()[1:3] == ["page", "size"])
    assert page.split()[:5] == ["WARNING", "page", "size", "optional", "16K"]
    assert "For 4K pages add `kernel=kernel8.img` to /boot/firmware/config.txt" in result.stdout
    assert "Unsupported system page size" in result.stdout and "`getconf PAGESIZE` prints 4096" in result.stdout
    assert result.stdout.splitlines()[-1] == "ready: this kernel has everything CRI-O 1.20.9 needs; but read the warnings: page size"


def pi_tree(tmp_path: Path, proc_cmdline: str, firmware_cmdline: str, controllers: str, cmdline_txt: str) -> Path:
    """A Pi 5's /proc, /sys and /boot from tests/fixtures/kernel/pi, for --root."""
    root = tmp_path / "root"
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/osrelease").write_text("6.12.34+rpt-rpi-2712\n")
    (root / "proc/cmdline").write_text((PI_BOOT / "proc-cmdline" / f"{proc_cmdline}.txt").read_text())
    (root / "proc/cgroups").write_text((PI_BOOT / "proc-cgroups-6.12.txt").read_text())
    (root / "proc/config.gz").write_bytes(gzip.compress(PI5.read_bytes()))
    (root / "sys/fs/cgroup").mkdir(parents=True)
    (root / "sys/fs/cgroup/cgroup.controllers").write_text((PI_BOOT / "cgroup-controllers" / f"{controllers}.txt").read_text())
    (root / cmdline_txt).parent.mkdir(parents=True)
    (root / cmdline_txt).write_text((PI_BOOT / "firmware-cmdline" / f"{firmware_cmdline}.txt").read_text())
    return root


@pytest.mark.parametrize("proc_cmdline, firmware_cmdline, controllers, cmdline_txt, code, status, says", [
    ("pi5-trixie-lite", "trixie-lite", "memory-off", "boot/firmware/cmdline.txt", 1, "disabled",
     ["append ` cgroup_enable=memory`", "/boot/firmware/cmdline.txt"]),
    ("pi5-trixie-lite", "bullseye", "memory-off", "boot/cmdline.txt", 1, "disabled", ["/boot/cmdline.txt"]),
    ("pi5-disable-last", "disable-last", "memory-off", "boot/firmware/cmdline.txt", 1, "disabled", ["is not enough"]),
    ("pi5-trixie-lite-fixed", "trixie-lite-fixed", "memory-on", "boot/firmware/cmdline.txt", 0, "enabled", []),
], ids=["trixie-lite", "bullseye-path", "disable-last", "fixed"])
def test_standalone_reads_a_raspberry_pi_under_root(tmp_path, proc_cmdline, firmware_cmdline, controllers, cmdline_txt,
                                                   code, status, says):
    root = pi_tree(tmp_path, proc_cmdline, firmware_cmdline, controllers, cmdline_txt)
    env = {"PATH": str(tmp_path)}  # no crio, no dpkg: this python's word size decides the userland
    result = standalone("--root", str(root), "--crio-version", "1.20.9", "--json", env=env)
    assert result.returncode == code, result.stdout + result.stderr
    data = json.loads(result.stdout)
    memory = next(f for f in data["findings"] if f["name"] == "memory cgroup (live)")
    assert (memory["status"], memory["blocking"], data["config_source"]) == (status, code == 1, str(root / "proc/config.gz"))
    assert [text for text in says if text not in memory["hint"]] == []
    quiet = standalone("--root", str(root), "--crio-version", "1.20.9", "--quiet-warn", env=env)
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert ("memory cgroup (live) is disabled" in quiet.stderr) is (code == 1)


# ---------------------------------------------------------------- the script stays shippable


def test_script_imports_only_the_standard_library():
    tree = ast.parse(SCRIPT.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - set(sys.stdlib_module_names) == set()


def test_script_parses_as_python_3_7_for_raspberry_pi_os_buster():
    ast.parse(SCRIPT.read_text(), feature_version=(3, 7))


def test_script_is_executable_with_a_python3_shebang():
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")


# ---------------------------------------------------------------- this machine, for real


@pytest.mark.parametrize("version", ["1.18.0", "1.20.9"])
def test_running_machine_gets_a_verdict_consistent_with_its_findings(version):
    result = standalone("--json", "--crio-version", version)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    data = json.loads(result.stdout)
    blocking = [f["name"] for f in data["findings"] if f["required"] and f["status"] in PROBLEMS]
    assert result.returncode == (1 if blocking else 0), blocking
    names = {f["name"] for f in data["findings"]}
    assert {"CONFIG_HUGETLBFS", "CONFIG_CGROUP_HUGETLB", "hugetlb cgroup (live)"} <= names
    assert any(f["name"] == "kernel and userland architecture" for f in data["findings"])
    hugetlb_required = {f["required"] for f in data["findings"] if f["group"] == "hugetlb"}
    assert hugetlb_required == {version == "1.18.0"}


# ---------------------------------------------------------------- `doit check:kernel`, as dodo.py wires it


DODO = '''
from pathlib import Path
from builders.kernel_report import check_kernel_task
from builders.recipe import load_all

RECIPES = load_all(Path({recipes!r}))
DOIT_CONFIG = {{"verbosity": 2}}


def task_check():
    yield {{
        "name": "kernel",
        "actions": [(check_kernel_task, [], {{"recipes": RECIPES}})],
        "params": [
            {{"name": "config", "long": "config", "default": ""}},
            {{"name": "crio_version", "long": "crio-version", "default": ""}},
            {{"name": "json_output", "long": "json", "type": bool, "default": False}},
        ],
        "uptodate": [False],
        "verbosity": 2,
    }}
'''


def doit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    dodo = tmp_path / "dodo.py"
    dodo.write_text(DODO.format(recipes=str(REPO / "recipes")))
    env = dict(os.environ, COLUMNS="120")
    return subprocess.run([sys.executable, "-m", "doit", "-f", str(dodo), "--db-file", str(tmp_path / "doit.db"), *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False)


@pytest.mark.parametrize("config, version, code", [
    (DEBIAN, "1.18.0", 0),
    (PI4, "1.18.0", 1),
    (PI4, "crio-1.18", 0),
    (FIXTURES / "empty.config", "", 2),
])
def test_doit_check_kernel_exit_codes(tmp_path, config, version, code):
    args = ["check:kernel", "--config", str(config)] + (["--crio-version", version] if version else [])
    result = doit(tmp_path, *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    if code == 2:
        assert "is empty" in result.stderr
    else:
        assert "CONFIG_CGROUP_HUGETLB" in result.stdout


def test_doit_check_kernel_json_defaults_to_the_newest_recipe(tmp_path):
    result = doit(tmp_path, "-r", "zero", "check:kernel", "--config", str(PI4), "--json")
    data = json.loads(result.stdout)
    newest = max((r.crio.version for r in load_all(REPO / "recipes")), key=builders.kernel_check.parse_version)
    assert data["crio_version"] == newest
    assert result.returncode == data["exit_code"] == 0
