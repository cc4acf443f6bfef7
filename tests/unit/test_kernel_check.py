"""The kernel check's pure core and live-state readers, table-driven over fixture configs and fake /proc trees."""
from __future__ import annotations

import gzip
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from builders import kernel_check as kc
from builders import kernel_report

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kernel"
PI4 = FIXTURES / "rpi4-bcm2711-5.4.config"
DEBIAN = FIXTURES / "debian-bookworm-arm64-6.1.config"
CUSTOM = FIXTURES / "custom-nft-only-no-seccomp.config"
PI5 = FIXTURES / "rpi5-bcm2712-6.12.config"      # kernel_2712.img: 16K pages, no CONFIG_MEMCG_V1
PI_V8 = FIXTURES / "rpi-v8-bcm2711-6.12.config"  # kernel8.img: 4K pages
PI_BOOT = FIXTURES / "pi"                          # /proc/cmdline, cmdline.txt, cgroup.controllers, /proc/cgroups
HUGETLB_OPTIONS = {"CONFIG_HUGETLBFS", "CONFIG_CGROUP_HUGETLB"}


def by_name(findings: list[kc.Finding]) -> dict[str, kc.Finding]:
    return {f.name: f for f in findings}


# ---------------------------------------------------------------- versions


@pytest.mark.parametrize("version, needs", [
    ("1.18.0", True),
    ("1.18.0-rc1", True),
    ("v1.18.0", True),
    ("1.18.1", False),
    ("1.18.6", False),
    ("1.17.4", False),
    ("1.20.9", False),
    ("1.18.0-dev", False),   # sorts below rc1: not one of the releases that shipped the bug
    (None, False),           # unknown version: assume a fixed release
])
def test_hugetlb_is_required_exactly_for_1_18_0_and_its_rc(version, needs):
    assert kc.needs_hugetlb(version) is needs


def test_versions_sort_prereleases_before_the_release():
    ordered = ["1.17.4", "1.18.0-dev", "1.18.0-rc1", "1.18.0", "1.18.1", "1.20.9"]
    assert sorted(reversed(ordered), key=kc.parse_version) == ordered


@pytest.mark.parametrize("text", ["1.18", "banana", "", "1.18.x"])
def test_a_malformed_version_is_refused_with_an_example(text):
    with pytest.raises(ValueError, match="like 1.18.6"):
        kc.parse_version(text)


# ---------------------------------------------------------------- fixture configs, table-driven


FIXTURE_TABLE = [
    # (fixture, CRI-O version, exit code, {option: (status, detail)})
    (PI4, "1.18.0", 1, {"CONFIG_HUGETLBFS": ("missing", "is not set"), "CONFIG_CGROUP_HUGETLB": ("missing", "absent"),
                        "CONFIG_MEMCG": ("enabled", "=y"), "CONFIG_OVERLAY_FS": ("module", "=m")}),
    (PI4, "1.18.0-rc1", 1, {"CONFIG_CGROUP_HUGETLB": ("missing", "absent")}),
    (PI4, "1.18.1", 0, {"CONFIG_CGROUP_HUGETLB": ("missing", "absent"), "CONFIG_BRIDGE_NETFILTER": ("module", "=m")}),
    (PI4, "1.18.6", 0, {"CONFIG_VETH": ("module", "=m"), "CONFIG_SECCOMP_FILTER": ("enabled", "=y")}),
    (DEBIAN, "1.18.0", 0, {"CONFIG_CGROUP_HUGETLB": ("enabled", "=y"), "CONFIG_HUGETLBFS": ("enabled", "=y"),
                           "CONFIG_IP_NF_NAT": ("module", "=m")}),
    (DEBIAN, "1.20.9", 0, {"CONFIG_BRIDGE": ("module", "=m")}),
    (CUSTOM, "1.18.6", 1, {"CONFIG_SECCOMP": ("missing", "is not set"), "CONFIG_SECCOMP_FILTER": ("missing", "absent"),
                           "CONFIG_BRIDGE": ("missing", "is not set"), "CONFIG_VETH": ("missing", "absent"),
                           "CONFIG_IP_NF_IPTABLES": ("enabled", "=y (via CONFIG_NFT_COMPAT)"),
                           "CONFIG_IP_NF_TARGET_MASQUERADE": ("enabled", "=y (via CONFIG_NFT_MASQ)"),
                           "CONFIG_CGROUP_HUGETLB": ("enabled", "=y")}),
    # the Pi 5's 16K kernel: everything CRI-O needs, a warning about pages (not a failure), hugetlb only for 1.18.0
    (PI5, "1.20.9", 0, {"page size": ("warning", "16K (CONFIG_ARM64_16K_PAGES=y)"), "CONFIG_MEMCG": ("enabled", "=y"),
                        "CONFIG_CGROUP_HUGETLB": ("missing", "absent"), "CONFIG_OVERLAY_FS": ("module", "=m")}),
    (PI5, "1.18.0", 1, {"CONFIG_HUGETLBFS": ("missing", "is not set"), "page size": ("warning", "16K (CONFIG_ARM64_16K_PAGES=y)")}),
    (PI_V8, "1.20.9", 0, {"CONFIG_CGROUP_PIDS": ("enabled", "=y"), "CONFIG_HUGETLBFS": ("missing", "is not set")}),
]


@pytest.mark.parametrize("fixture, version, exit_code, expected", FIXTURE_TABLE,
                         ids=[f"{row[0].stem}@{row[1]}" for row in FIXTURE_TABLE])
def test_fixture_configs_give_the_expected_verdict_and_statuses(fixture, version, exit_code, expected):
    report = kc.run_check(str(fixture), version)
    assert report.exit_code == exit_code
    assert report.config_source == str(fixture)
    findings = by_name(report.findings)
    for option, (status, detail) in expected.items():
        assert (findings[option].status, findings[option].detail) == (status, detail), option


def test_pi_kernel_for_1_18_0_is_blocked_by_hugetlb_alone_and_names_the_fix():
    report = kc.run_check(str(PI4), "1.18.0")
    blocking = {f.name for f in report.findings if f.blocking}
    assert blocking == HUGETLB_OPTIONS
    hint = by_name(report.findings)["CONFIG_CGROUP_HUGETLB"].hint
    assert "1.18.1" in hint and "CONFIG_CGROUP_HUGETLB=y" in hint


def test_custom_kernel_lists_every_required_gap_but_not_optional_ones():
    report = kc.run_check(str(CUSTOM), "1.20.9")
    blocking = {f.name for f in report.findings if f.blocking}
    assert blocking == {"CONFIG_SECCOMP", "CONFIG_SECCOMP_FILTER", "CONFIG_BRIDGE", "CONFIG_VETH", "CONFIG_BRIDGE_NETFILTER"}
    user_ns = by_name(report.findings)["CONFIG_USER_NS"]
    assert (user_ns.status, user_ns.required) == ("missing", False)


def test_hugetlb_findings_come_first():
    findings = kc.run_check(str(DEBIAN), "1.20.9").findings
    assert [f.name for f in findings[:2]] == ["CONFIG_HUGETLBFS", "CONFIG_CGROUP_HUGETLB"]


def test_only_hugetlb_changes_between_an_affected_and_a_fixed_release():
    affected = {f.name for f in kc.check({}, None, "1.18.0") if f.required}
    fixed = {f.name for f in kc.check({}, None, "1.18.1") if f.required}
    assert affected - fixed == HUGETLB_OPTIONS
    assert fixed <= affected


def test_every_option_the_issue_names_is_checked_with_its_purpose():
    rules = {r.option: r for r in kc.RULES}
    named = ["CONFIG_NET_NS", "CONFIG_PID_NS", "CONFIG_IPC_NS", "CONFIG_UTS_NS", "CONFIG_USER_NS",
             "CONFIG_CGROUP_SCHED", "CONFIG_CPUSETS", "CONFIG_MEMCG", "CONFIG_CGROUP_PIDS", "CONFIG_CGROUP_DEVICE",
             "CONFIG_CGROUP_FREEZER", "CONFIG_CGROUP_HUGETLB", "CONFIG_HUGETLBFS", "CONFIG_SECCOMP", "CONFIG_OVERLAY_FS",
             "CONFIG_VETH", "CONFIG_BRIDGE", "CONFIG_BRIDGE_NETFILTER", "CONFIG_NETFILTER_XT_MATCH_COMMENT",
             "CONFIG_NETFILTER_XT_MATCH_MULTIPORT", "CONFIG_IP_NF_TARGET_MASQUERADE"]
    assert [name for name in named if name not in rules] == []
    assert all(rules[name].purpose for name in named)


# ---------------------------------------------------------------- =y, =m, is not set, absent


@pytest.mark.parametrize("line, status, detail, blocks", [
    ("CONFIG_VETH=y", "enabled", "=y", False),
    ("CONFIG_VETH=m", "module", "=m", False),
    ("# CONFIG_VETH is not set", "missing", "is not set", True),
    ("CONFIG_VETH=n", "missing", "is not set", True),
    ("", "missing", "absent", True),
])
def test_builtin_module_not_set_and_absent_are_told_apart(line, status, detail, blocks):
    base = DEBIAN.read_text().replace("CONFIG_VETH=m\n", "")
    config = kc.parse_config(base + line + "\n")
    veth = by_name(kc.check(config, None, "1.20.9"))["CONFIG_VETH"]
    assert (veth.status, veth.detail, veth.blocking) == (status, detail, blocks)
    assert any(f.blocking for f in kc.check(config, None, "1.20.9")) is blocks


def test_a_module_says_it_loads_on_demand():
    veth = by_name(kc.check(kc.parse_config("CONFIG_VETH=m\n"), None, "1.20.9"))["CONFIG_VETH"]
    assert "module" in veth.hint


def test_parse_keeps_string_values_without_quotes():
    assert kc.parse_config('CONFIG_LOCALVERSION="-v8"\nCONFIG_HZ=250\n') == {"CONFIG_LOCALVERSION": "-v8", "CONFIG_HZ": "250"}


# ---------------------------------------------------------------- bad input


def test_gzipped_config_reads_like_the_plain_one(tmp_path):
    packed = tmp_path / "config.gz"
    packed.write_bytes(gzip.compress(PI4.read_bytes()))
    assert kc.parse_config(kc.read_config_text(packed)) == kc.parse_config(PI4.read_text())


def test_gzip_is_detected_by_content_not_by_name(tmp_path):
    plain_named_gz = tmp_path / "config.gz"
    plain_named_gz.write_bytes(DEBIAN.read_bytes())
    gzipped_named_plain = tmp_path / "config"
    gzipped_named_plain.write_bytes(gzip.compress(DEBIAN.read_bytes()))
    assert kc.run_check(str(plain_named_gz), "1.18.0").exit_code == 0
    assert kc.run_check(str(gzipped_named_plain), "1.18.0").exit_code == 0


def truncated_gzip(tmp_path: Path) -> Path:
    whole = gzip.compress(DEBIAN.read_bytes())
    path = tmp_path / "config.gz"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def not_a_directory_path(tmp_path: Path) -> Path:
    (tmp_path / "kernel-config").mkdir()
    return tmp_path / "kernel-config"


@pytest.mark.parametrize("make, message, hint", [
    (lambda tmp: tmp / "does-not-exist", "no such file", "/proc/config.gz"),
    (lambda tmp: FIXTURES / "empty.config", "is empty", "/proc/config.gz"),
    (lambda tmp: FIXTURES / "raspberrypi-firmware-config.txt", "is not a kernel config because it has no CONFIG_ lines", "modprobe configs"),
    (truncated_gzip, "truncated or corrupt gzip", "/proc/config.gz"),
    (not_a_directory_path, "is a directory", "config file itself"),
], ids=["missing", "empty", "firmware-config.txt", "truncated-gzip", "directory"])
def test_unreadable_configs_give_no_verdict_and_say_why(tmp_path, make, message, hint):
    path = make(tmp_path)
    report = kc.run_check(str(path), "1.18.6")
    assert report.exit_code == 2 and report.verdict == "no-config"
    assert str(path) in report.error.message and message in report.error.message
    assert hint in report.error.hint
    assert report.findings == []


def test_an_unreadable_file_hints_at_root(tmp_path, monkeypatch):
    path = tmp_path / "config"
    path.write_text("CONFIG_VETH=y\n")

    real_open = Path.open

    def denied(self, *args, **kwargs):  # chmod 0 does not stop root, who runs these tests in CI
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    report = kc.run_check(str(path), "1.18.6")
    assert report.exit_code == 2
    assert "permission is denied" in report.error.message and "run as root" in report.error.hint


def test_an_empty_gzip_is_an_empty_config(tmp_path):
    path = tmp_path / "config.gz"
    path.write_bytes(gzip.compress(b""))
    assert "is empty" in kc.run_check(str(path), None).error.message


# ---------------------------------------------------------------- live state: fake /proc and /sys trees


PROC_CGROUPS_V1 = """#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t4\t58\t1
cpuacct\t4\t58\t1
blkio\t6\t58\t1
memory\t0\t70\t{memory}
devices\t5\t58\t1
freezer\t8\t1\t1
net_cls\t2\t1\t1
pids\t7\t63\t1
"""


def fake_root(tmp_path: Path, *, memory: int = 1, hugetlb_line: bool = False, hugetlb_dir: bool = False,
              v2_controllers: str | None = None, cmdline: str = "console=tty1 root=PARTUUID=1 rootwait",
              cmdline_txt: str | None = "boot/firmware/cmdline.txt", config: Path | None = PI4,
              release: str = "5.4.51-v8+") -> Path:
    root = tmp_path / "root"
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/osrelease").write_text(release + "\n")
    cgroups = PROC_CGROUPS_V1.format(memory=memory) + ("hugetlb\t9\t1\t1\n" if hugetlb_line else "")
    (root / "proc/cgroups").write_text(cgroups)
    (root / "proc/cmdline").write_text(cmdline + "\n")
    (root / "sys/fs/cgroup").mkdir(parents=True)
    if hugetlb_dir:
        (root / "sys/fs/cgroup/hugetlb").mkdir()
    if v2_controllers is not None:
        (root / "sys/fs/cgroup/cgroup.controllers").write_text(v2_controllers + "\n")
    if cmdline_txt:
        (root / cmdline_txt).parent.mkdir(parents=True, exist_ok=True)
        (root / cmdline_txt).write_text(cmdline + "\n")
    if config:
        (root / "proc/config.gz").write_bytes(gzip.compress(config.read_bytes()))
    return root


def live_check(root: Path, version: str, machine: str = "aarch64", userland: str = "arm64", page_size: int = 4096) -> kc.Report:
    return kc.run_check(None, version, root=root, machine=machine, userland_arch=userland, page_size=page_size)


def test_pi_memory_cgroup_disabled_at_runtime_blocks_and_gives_the_cmdline_fix(tmp_path):
    root = fake_root(tmp_path, memory=0, cmdline="console=tty1 cgroup_disable=memory rootwait")
    report = live_check(root, "1.18.6")
    memory = by_name(report.findings)["memory cgroup (live)"]
    assert (memory.status, memory.blocking) == ("disabled", True)
    assert "` cgroup_enable=memory`" in memory.hint and "cgroup_memory=1 is not needed" in memory.hint
    assert "/boot/firmware/cmdline.txt" in memory.hint and "cgroup_disable=memory" in memory.hint
    assert by_name(report.findings)["CONFIG_MEMCG"].status == "enabled"  # built in, yet switched off
    assert report.exit_code == 1


def test_memory_fix_names_the_older_cmdline_txt_when_that_is_the_one_present(tmp_path):
    root = fake_root(tmp_path, memory=0, cmdline_txt="boot/cmdline.txt")
    hint = by_name(live_check(root, "1.18.6").findings)["memory cgroup (live)"].hint
    assert "/boot/cmdline.txt" in hint and "/boot/firmware" not in hint


def test_pi_with_memory_enabled_and_no_hugetlb_is_ready_for_1_18_6_but_not_1_18_0(tmp_path):
    root = fake_root(tmp_path)
    fixed, affected = live_check(root, "1.18.6"), live_check(root, "1.18.0")
    assert fixed.exit_code == 0 and affected.exit_code == 1
    hugetlb = by_name(affected.findings)
    assert hugetlb["hugetlb cgroup (live)"].status == "missing" and hugetlb["hugetlb cgroup (live)"].blocking
    assert hugetlb["/sys/fs/cgroup/hugetlb"].status == "missing" and hugetlb["/sys/fs/cgroup/hugetlb"].blocking
    assert affected.config_source == str(root / "proc/config.gz")


def test_hugetlb_controller_present_but_unmounted_suggests_mounting_not_rebuilding(tmp_path):
    root = fake_root(tmp_path, config=DEBIAN, hugetlb_line=True)
    hierarchy = by_name(live_check(root, "1.18.0").findings)["/sys/fs/cgroup/hugetlb"]
    assert hierarchy.blocking and "mount -t cgroup -o hugetlb" in hierarchy.hint
    mounted = fake_root(tmp_path / "mounted", config=DEBIAN, hugetlb_line=True, hugetlb_dir=True)
    assert live_check(mounted, "1.18.0").exit_code == 0


def test_cgroup_v2_without_hugetlb_in_cgroup_controllers(tmp_path):
    root = fake_root(tmp_path, config=DEBIAN, v2_controllers="cpuset cpu io memory pids rdma misc")
    report = live_check(root, "1.18.0")
    findings = by_name(report.findings)
    assert findings["hugetlb cgroup (live)"].status == "missing"
    assert findings["hugetlb cgroup (live)"].purpose.endswith("(/sys/fs/cgroup/cgroup.controllers)")
    assert "/sys/fs/cgroup/hugetlb" not in findings          # a v1-only path
    assert "devices cgroup (live)" not in findings           # no such controller on v2
    assert findings["memory cgroup (live)"].status == "enabled"
    assert {f.name for f in report.findings if f.blocking} == {"hugetlb cgroup (live)"}
    assert live_check(root, "1.20.9").exit_code == 0


def test_cgroup_v2_memory_disabled_on_the_command_line(tmp_path):
    root = fake_root(tmp_path, memory=0, config=DEBIAN, v2_controllers="cpuset cpu io pids hugetlb")
    memory = by_name(live_check(root, "1.20.9").findings)["memory cgroup (live)"]
    assert (memory.status, memory.blocking) == ("disabled", True)


def test_unreadable_proc_cgroups_is_unknown_not_missing(tmp_path):
    root = fake_root(tmp_path, config=DEBIAN)
    (root / "proc/cgroups").unlink()
    report = live_check(root, "1.20.9")
    assert by_name(report.findings)["memory cgroup (live)"].status == "unknown"
    assert report.exit_code == 0


@pytest.mark.parametrize("machine, userland, status, exit_code, packages", [
    ("aarch64", "arm64", "enabled", 0, "arm64"),
    ("aarch64", "armhf", "warning", 0, "armhf"),   # Raspberry Pi OS 32-bit booting the 64-bit kernel: armhf packages
    ("armv7l", "armhf", "enabled", 0, "armhf"),    # a 32-bit ARMv7 kernel (Pi 2; Debian's armmp): the armhf packages run
    ("armv6l", "armhf", "missing", 1, None),       # an ARMv6 Pi (1, Zero): the armhf packages are ARMv7
    ("x86_64", "amd64", "enabled", 0, "amd64"),
])
def test_userland_and_kernel_word_size(tmp_path, machine, userland, status, exit_code, packages):
    report = live_check(fake_root(tmp_path, config=DEBIAN), "1.20.9", machine=machine, userland=userland)
    platform = by_name(report.findings)["kernel and userland architecture"]
    assert platform.status == status and platform.detail == f"{machine} / {userland}"
    assert report.exit_code == exit_code
    if packages:
        assert f"install the {packages} packages" in platform.hint
    if status == "warning":
        assert "Raspberry Pi OS (64-bit)" in platform.hint and not platform.blocking


def fake_dpkg(tmp_path: Path, arch: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dpkg = bin_dir / "dpkg"
    dpkg.write_text(f'#!/bin/sh\n[ "$1" = --print-architecture ] && echo {arch}\n')
    dpkg.chmod(dpkg.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_userland_arch_comes_from_dpkg_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_dpkg(tmp_path, "armhf")))
    live = kc.read_live_state(fake_root(tmp_path), machine="aarch64")
    assert (live.userland_arch, live.userland_bits) == ("armhf", 32)
    assert by_name(kc.live_findings(live, "1.18.6"))["kernel and userland architecture"].status == "warning"


def test_without_dpkg_the_word_size_of_python_decides(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    live = kc.read_live_state(fake_root(tmp_path), machine="aarch64")
    assert live.userland_arch is None and live.userland_bits == 64  # this test's python is 64-bit


# ---------------------------------------------------------------- finding the running kernel's config


def test_proc_config_gz_is_preferred_over_boot(tmp_path):
    root = fake_root(tmp_path, config=PI4, release="6.1.0-18-arm64")
    (root / "boot").mkdir(exist_ok=True)
    (root / "boot/config-6.1.0-18-arm64").write_text(DEBIAN.read_text())
    path, _ = kc.find_config(root)
    assert path == root / "proc/config.gz"


@pytest.mark.parametrize("place", ["boot/config-{r}", "lib/modules/{r}/config", "usr/src/linux-headers-{r}/.config"])
def test_config_is_found_where_distributions_keep_it(tmp_path, place):
    root = fake_root(tmp_path, config=None, release="6.1.0-18-arm64")
    target = root / place.format(r="6.1.0-18-arm64")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(DEBIAN.read_text())
    report = live_check(root, "1.18.0")
    assert report.config_source == str(target)
    assert report.exit_code == 1  # the DEBIAN config is fine; the fake machine has no hugetlb hierarchy


def test_a_corrupt_proc_config_gz_falls_back_to_boot(tmp_path):
    root = fake_root(tmp_path, config=None, release="6.1.0-18-arm64")
    (root / "proc/config.gz").write_bytes(truncated_gzip(tmp_path).read_bytes())
    (root / "boot").mkdir(exist_ok=True)
    (root / "boot/config-6.1.0-18-arm64").write_text(DEBIAN.read_text())
    assert kc.find_config(root)[0] == root / "boot/config-6.1.0-18-arm64"


def test_no_config_anywhere_gives_no_verdict_but_still_reports_live_state(tmp_path):
    root = fake_root(tmp_path, config=None, memory=0)
    report = live_check(root, "1.18.6")
    assert report.exit_code == 2
    assert "no kernel config found" in report.error.message and "modprobe configs" in report.error.hint
    assert by_name(report.findings)["memory cgroup (live)"].status == "disabled"


# ---------------------------------------------------------------- what people and postinst read


def test_text_report_says_which_release_fixes_hugetlb(tmp_path):
    text = kc.format_text(kc.run_check(str(PI4), "1.18.0"))
    rows = [line.split() for line in text.splitlines() if line.strip()]
    hugetlb_row = next(row for row in rows if row[1:2] == ["CONFIG_CGROUP_HUGETLB"])
    assert hugetlb_row[:4] == ["MISSING", "CONFIG_CGROUP_HUGETLB", "required", "absent"]
    assert "fixed in 1.18.1" in text
    assert text.splitlines()[-1] == "NOT READY: CRI-O 1.18.0 needs CONFIG_HUGETLBFS, CONFIG_CGROUP_HUGETLB"


def test_quiet_warn_lines_are_one_per_required_gap():
    lines = kc.warnings(kc.run_check(str(PI4), "1.18.0"))
    assert len(lines) == 2 and all(line.startswith("warning: ") for line in lines)
    assert kc.warnings(kc.run_check(str(PI4), "1.18.6")) == []


def test_quiet_warn_without_a_config_still_warns_about_live_gaps(tmp_path):
    lines = kc.warnings(live_check(fake_root(tmp_path, config=None, memory=0), "1.18.6"))
    assert lines[0].startswith("warning: could not check the kernel config") and "modprobe configs" in lines[0]
    assert len(lines) == 2 and "memory cgroup (live) is disabled" in lines[1] and "cgroup_enable=memory" in lines[1]


def test_json_dict_lists_each_finding_with_its_verdict():
    data = kc.run_check(str(PI4), "1.18.0").to_dict()
    assert (data["verdict"], data["exit_code"], data["crio_version"]) == ("required-missing", 1, "1.18.0")
    hugetlb = next(f for f in data["findings"] if f["name"] == "CONFIG_CGROUP_HUGETLB")
    assert hugetlb == {**hugetlb, "group": "hugetlb", "required": True, "status": "missing", "blocking": True}


# ---------------------------------------------------------------- the doit side (builders/kernel_report.py)


def fake_recipe(name: str, version: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, crio=SimpleNamespace(version=version))


RECIPES = [fake_recipe("crio-1.18", "1.18.6"), fake_recipe("crio-1.20", "1.20.9"), fake_recipe("crio-1.9", "1.9.0")]


@pytest.mark.parametrize("requested, resolved", [
    ("", "1.20.9"),              # the newest by version, not by file name ("1.9" sorts last as text)
    ("crio-1.18", "1.18.6"),     # a recipe name
    ("1.18.0", "1.18.0"),        # an explicit release
])
def test_crio_version_comes_from_the_newest_recipe_or_the_parameter(requested, resolved):
    assert kernel_report.resolve_crio_version(requested, RECIPES) == resolved


def test_no_recipes_and_no_version_means_any_fixed_release():
    assert kernel_report.resolve_crio_version("", []) is None


@pytest.mark.parametrize("config, version, result", [
    (DEBIAN, "1.18.0", type(None)),
    (PI4, "1.18.0", kernel_report.TaskFailed),
    (FIXTURES / "empty.config", "1.18.0", kernel_report.TaskError),
    (PI4, "not-a-version", kernel_report.TaskError),
])
def test_check_kernel_task_maps_the_verdict_to_doit(capsys, config, version, result):
    outcome = kernel_report.check_kernel_task(str(config), version, False, RECIPES)
    assert type(outcome) is result
    out, err = capsys.readouterr()
    if result is kernel_report.TaskError:
        assert err.startswith("error: ")
    else:
        assert "CONFIG_CGROUP_HUGETLB" in out and "Kernel check for CRI-O 1.18.0" in out


def test_check_kernel_task_json_is_the_report(capsys):
    import json

    kernel_report.check_kernel_task(str(PI4), "", True, RECIPES)
    data = json.loads(capsys.readouterr().out)
    assert (data["crio_version"], data["verdict"]) == ("1.20.9", "ok")


# ---------------------------------------------------------------- today's Raspberry Pi: fixture boots, table-driven


@dataclass(frozen=True)
class Boot:
    """One Pi as the check sees it: files under tests/fixtures/kernel/pi plus uname -r/-m, dpkg and the page size."""
    release: str
    proc_cmdline: str                          # pi/proc-cmdline/<name>.txt -> /proc/cmdline
    firmware_cmdline: str | None               # pi/firmware-cmdline/<name>.txt -> cmdline_txt
    controllers: str | None = "memory-on"      # pi/cgroup-controllers/<name>.txt; None: no cgroup v2 mounted
    proc_cgroups: str | None = "proc-cgroups-6.12.txt"
    cmdline_txt: str = "boot/firmware/cmdline.txt"
    config: Path = PI5
    machine: str = "aarch64"
    userland: str = "arm64"
    page_size: int = 4096


def pi_root(tmp_path: Path, boot: Boot) -> Path:
    root = tmp_path / "pi"
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/osrelease").write_text(boot.release + "\n")
    (root / "proc/cmdline").write_text((PI_BOOT / "proc-cmdline" / f"{boot.proc_cmdline}.txt").read_text())
    (root / "proc/config.gz").write_bytes(gzip.compress(boot.config.read_bytes()))
    if boot.proc_cgroups:
        (root / "proc/cgroups").write_text((PI_BOOT / boot.proc_cgroups).read_text())
    (root / "sys/fs/cgroup").mkdir(parents=True)
    if boot.controllers:
        (root / "sys/fs/cgroup/cgroup.controllers").write_text((PI_BOOT / "cgroup-controllers" / f"{boot.controllers}.txt").read_text())
    if boot.firmware_cmdline:
        (root / boot.cmdline_txt).parent.mkdir(parents=True, exist_ok=True)
        (root / boot.cmdline_txt).write_text((PI_BOOT / "firmware-cmdline" / f"{boot.firmware_cmdline}.txt").read_text())
    return root


def boot_check(tmp_path: Path, boot: Boot, version: str = "1.20.9") -> kc.Report:
    return kc.run_check(None, version, root=pi_root(tmp_path, boot), machine=boot.machine,
                        userland_arch=boot.userland, page_size=boot.page_size)


PI5_LITE = Boot("6.12.34+rpt-rpi-2712", "pi5-trixie-lite", "trixie-lite", "memory-off", page_size=16384)
PI5_FIXED = Boot("6.12.34+rpt-rpi-2712", "pi5-trixie-lite-fixed", "trixie-lite-fixed", page_size=16384)
PI4_ARMHF = Boot("6.12.75+rpt-rpi-v8", "pi4-trixie-armhf", "trixie-lite-fixed", config=PI_V8, userland="armhf")
MEMORY, PIDS, PAGE, ARCH = "memory cgroup (live)", "pids cgroup (live)", "page size", "kernel and userland architecture"

PI_TABLE = [
    # (id, boot, exit code, {finding: status}, finding whose hint is read, fragments it has, fragments it must not have)
    ("pi5-6.12-trixie-lite-memory-off", PI5_LITE, 1, {MEMORY: "disabled", PAGE: "warning", ARCH: "enabled"},
     MEMORY, ["/boot/firmware/cmdline.txt", "` cgroup_enable=memory`", "cgroup_disable=memory", "device tree",
              "raspberrypi/linux#6980", "reboot", "cgroup_memory=1 is not needed"], ["/boot/cmdline.txt"]),
    ("pi5-6.12-after-the-fix-16k-arm64-warns", PI5_FIXED, 0, {MEMORY: "enabled", PIDS: "enabled", PAGE: "warning"},
     PAGE, ["16K", "kernel_2712.img", "Unsupported system page size", "`kernel=kernel8.img`", "/boot/firmware/config.txt",
            "CRI-O, runc, crun and conmon run"], []),
    ("pi5-edited-but-not-rebooted", Boot("6.12.34+rpt-rpi-2712", "pi5-trixie-lite", "trixie-lite-fixed", "memory-off"), 1,
     {MEMORY: "disabled"}, MEMORY, ["/boot/firmware/cmdline.txt already ends with cgroup_enable=memory", "reboot"], ["sed"]),
    ("pi5-disable-comes-last", Boot("6.12.34+rpt-rpi-2712", "pi5-disable-last", "disable-last", "memory-off"), 1,
     {MEMORY: "disabled"}, MEMORY, ["cgroup_disable=memory comes after it", "last switch wins", "is not enough",
                                    "/boot/firmware/cmdline.txt"], ["sed"]),
    ("fix-on-a-second-line", Boot("6.12.34+rpt-rpi-2712", "pi5-trixie-lite", "two-lines", "memory-off"), 1,
     {MEMORY: "disabled"}, MEMORY, ["only the first line"], []),
    ("non-pi-kernel-ignores-cgroup_enable", Boot("6.12.38+deb13-arm64", "debian-kernel-on-pi5", "trixie-lite-fixed",
                                                 "memory-off", config=DEBIAN), 1,
     {MEMORY: "disabled"}, MEMORY, ["6.12.38+deb13-arm64 is not a Raspberry Pi kernel", "only those accept cgroup_enable=memory",
                                    "device tree"], ["sed"]),
    ("pi-6.12-from-before-cgroup_enable", Boot("6.12.1-v8-16k+", "pi5-trixie-lite-fixed", "trixie-lite-fixed", "memory-off"), 1,
     {MEMORY: "disabled"}, MEMORY, ["predates cgroup_enable=", "full-upgrade"], []),
    ("pi4-bookworm-6.6-memory-on", Boot("6.6.74+rpt-rpi-v8", "pi4-bookworm-6.6", "bookworm-6.6", proc_cgroups=None,
                                        config=PI_V8), 0,
     {MEMORY: "enabled", PIDS: "enabled", PAGE: "enabled", ARCH: "enabled"}, ARCH, ["install the arm64 packages"], []),
    ("pi4-bullseye-boot-cmdline-txt", Boot("5.10.103-v8+", "pi4-bullseye-5.10", "bullseye", "memory-off",
                                           proc_cgroups="proc-cgroups-5.10.txt", cmdline_txt="boot/cmdline.txt", config=PI4), 1,
     {MEMORY: "disabled"}, MEMORY, ["/boot/cmdline.txt", "Raspberry Pi kernels before 6.12", "` cgroup_enable=memory`"],
     ["/boot/firmware"]),
    ("bookworm-boot-cmdline-txt-is-a-stub", Boot("6.12.34+rpt-rpi-2712", "pi5-trixie-lite", "boot-stub", "memory-off",
                                                 cmdline_txt="boot/cmdline.txt"), 1,
     {MEMORY: "disabled"}, MEMORY, ["/boot/firmware/cmdline.txt"], ["/boot/cmdline.txt"]),
    ("pi5-cgroup-v1-has-no-memory-on-6.12", Boot("6.12.34+rpt-rpi-2712", "pi5-cgroup-v1", "cgroup-v1", controllers=None), 1,
     {MEMORY: "missing", PIDS: "enabled"}, MEMORY, ["cgroup v1", "CONFIG_MEMCG_V1", "/proc/cgroups never lists memory",
                                                    "remove systemd.unified_cgroup_hierarchy=0 from /boot/firmware/cmdline.txt"], []),
    ("pids-missing-is-required", Boot("6.12.34+rpt-rpi-2712", "pi5-trixie-lite-fixed", "trixie-lite-fixed", "no-pids",
                                      proc_cgroups=None), 1,
     {MEMORY: "enabled", PIDS: "missing"}, PIDS, ["rebuild the kernel"], []),
    ("pi5-with-kernel8-img-4k", Boot("6.12.34+rpt-rpi-v8", "pi5-trixie-lite-fixed", "trixie-lite-fixed", config=PI_V8), 0,
     {PAGE: "enabled", ARCH: "enabled", MEMORY: "enabled"}, ARCH, ["install the arm64 packages"], []),
    ("armhf-userland-on-aarch64-4k", PI4_ARMHF, 0, {ARCH: "warning", PAGE: "enabled", MEMORY: "enabled"},
     ARCH, ["install the armhf packages, not arm64", "dpkg --print-architecture", "linux/arm", "aarch64"], []),
    ("armhf-userland-on-aarch64-16k", Boot("6.12.34+rpt-rpi-2712", "pi5-trixie-lite-fixed", "trixie-lite-fixed",
                                           userland="armhf", page_size=16384), 1,
     {ARCH: "warning", PAGE: "mismatch"}, PAGE, ["32-bit (armhf) programs need a kernel with 4K pages", "`kernel=kernel8.img`",
                                                 "/boot/firmware/config.txt"], []),
]


@pytest.mark.parametrize("boot, exit_code, statuses, focus, has, lacks", [row[1:] for row in PI_TABLE],
                         ids=[row[0] for row in PI_TABLE])
def test_raspberry_pi_boots(tmp_path, boot, exit_code, statuses, focus, has, lacks):
    report = boot_check(tmp_path, boot)
    findings = by_name(report.findings)
    assert report.exit_code == exit_code, [(f.name, f.status) for f in report.findings if f.blocking]
    assert {name: findings[name].status for name in statuses} == statuses
    hint = findings[focus].hint
    assert [text for text in has if text not in hint] == [], hint
    assert [text for text in lacks if text in hint] == [], hint
    assert findings[PAGE].detail == f"{boot.page_size} ({boot.page_size // 1024}K)"
    if findings[MEMORY].status != "enabled":
        assert findings[MEMORY].blocking and findings["CONFIG_MEMCG"].status == "enabled"  # built in, switched off


def test_only_the_problems_block_on_a_fresh_pi5(tmp_path):
    report = boot_check(tmp_path, PI5_LITE)
    assert {f.name for f in report.findings if f.blocking} == {MEMORY}
    assert report.findings[-1].name == PAGE and not report.findings[-1].blocking


def test_pi_hugetlb_is_expected_and_only_1_18_0_needs_it(tmp_path):
    root = pi_root(tmp_path, PI5_FIXED)
    fixed = kc.run_check(None, "1.18.1", root=root, machine="aarch64", userland_arch="arm64", page_size=16384)
    affected = kc.run_check(None, "1.18.0", root=root, machine="aarch64", userland_arch="arm64", page_size=16384)
    assert (fixed.exit_code, affected.exit_code) == (0, 1)
    for report in (fixed, affected):
        hugetlb = by_name(report.findings)["hugetlb cgroup (live)"]
        assert hugetlb.status == "missing" and "Raspberry Pi kernels are built without hugetlb" in hugetlb.hint
        assert "fixed in 1.18.1" in hugetlb.hint
    assert {f.name for f in affected.findings if f.blocking} == {"CONFIG_HUGETLBFS", "CONFIG_CGROUP_HUGETLB", "hugetlb cgroup (live)"}


def test_memory_is_judged_by_cgroup_controllers_not_proc_cgroups_on_6_12(tmp_path):
    root = pi_root(tmp_path, PI5_FIXED)
    assert "memory" not in (root / "proc/cgroups").read_text()  # CONFIG_MEMCG_V1 is not set
    assert by_name(boot_check(tmp_path / "again", PI5_FIXED).findings)[MEMORY].status == "enabled"


@pytest.mark.parametrize("release, pi", [
    ("6.12.34+rpt-rpi-2712", True), ("6.12.75+rpt-rpi-v8", True), ("6.1.0-rpi7-rpi-v8", True), ("6.6.74+rpt-rpi-v7l", True),
    ("5.10.103-v7l+", True), ("5.10.103-v8+", True), ("5.4.51-v7+", True), ("6.6.20-v8-16k+", True),
    ("6.12.38+deb13-arm64", False), ("6.1.0-18-arm64", False), ("6.8.0-1010-raspi", False), ("6.12.0-rc1", False), ("", False),
])
def test_which_kernels_are_raspberry_pi_kernels(release, pi):
    assert kc.is_pi_kernel(release) is pi


@pytest.mark.parametrize("cmdline_file, switches", [
    ("pi5-trixie-lite", ["disable"]),
    ("pi5-trixie-lite-fixed", ["disable", "enable"]),
    ("pi5-disable-last", ["enable", "disable"]),   # cgroup_memory=1 is not a switch
    ("pi4-bookworm-6.6", ["enable"]),
    ("pi4-bullseye-5.10", []),
])
def test_memory_switches_keep_command_line_order(cmdline_file, switches):
    assert kc.memory_switches((PI_BOOT / "proc-cmdline" / f"{cmdline_file}.txt").read_text()) == switches


def test_memory_switches_read_comma_lists():
    assert kc.memory_switches("cgroup_disable=memory,hugetlb cgroup_enable=cpuset,memory cgroup.memory=nokmem") == ["disable", "enable"]


# ---------------------------------------------------------------- Pi findings in the text, JSON, quiet-warn and rich views


def test_pi_findings_reach_the_text_report(tmp_path):
    text = kc.format_text(boot_check(tmp_path, PI5_LITE))
    rows = [line.split() for line in text.splitlines()]
    assert ["DISABLED", "memory", "cgroup", "(live)", "required", "disabled"] == next(r for r in rows if r[1:3] == ["memory", "cgroup"])[:6]
    assert next(r for r in rows if r[1:3] == ["page", "size"])[:5] == ["WARNING", "page", "size", "optional", "16384"]
    assert "-> the command line has cgroup_disable=memory" in text and "`kernel=kernel8.img`" in text
    assert text.splitlines()[-1] == "NOT READY: CRI-O 1.20.9 needs memory cgroup (live)"


def test_ready_with_warnings_says_so(tmp_path):
    assert kc.summary(boot_check(tmp_path, PI5_FIXED)).endswith("needs; but read the warnings: page size")
    assert kc.summary(boot_check(tmp_path / "armhf", PI4_ARMHF)).endswith("warnings: kernel and userland architecture")


def test_pi_findings_in_json_have_the_usual_shape(tmp_path):
    data = json.loads(json.dumps(boot_check(tmp_path, PI5_LITE).to_dict()))
    assert set(data) == {"crio_version", "config_source", "verdict", "exit_code", "error", "hint", "findings"}
    assert all(set(f) == {"name", "group", "required", "status", "detail", "purpose", "hint", "blocking"} for f in data["findings"])
    page = next(f for f in data["findings"] if f["name"] == PAGE)
    assert (page["group"], page["status"], page["blocking"]) == ("platform", "warning", False)


def test_quiet_warn_adds_a_line_per_warning(tmp_path):
    lines = kc.warnings(boot_check(tmp_path, PI5_LITE))
    assert len(lines) == 2
    assert "memory cgroup (live) is disabled" in lines[0] and "/boot/firmware/cmdline.txt" in lines[0]
    assert lines[1].startswith("warning: page size is 16384 (16K): ") and "kernel=kernel8.img" in lines[1]
    armhf = kc.warnings(boot_check(tmp_path / "armhf", PI4_ARMHF))
    assert len(armhf) == 1 and "install the armhf packages" in armhf[0]


def test_rich_view_shows_pi_findings_and_their_fixes(tmp_path):
    console = Console(record=True, width=240, color_system=None)
    kernel_report.render(boot_check(tmp_path, PI5_LITE), console)
    out = console.export_text()
    assert "memory cgroup (live)" in out and "WARNING" in out and "DISABLED" in out
    assert "cgroup_enable=memory" in out and "/boot/firmware/cmdline.txt" in out and "kernel=kernel8.img" in out
    assert "NOT READY" in out
