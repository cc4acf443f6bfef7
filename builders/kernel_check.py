#!/usr/bin/env python3
"""Can this kernel run CRI-O?  (hugetlb first)

One implementation for two places: `doit check:kernel` imports it (builders/kernel_report.py renders
the result with rich), and the cri-o package and release tarball ship this very file as a standalone
script for the target machine. It therefore uses the Python 3 standard library ONLY and keeps to
Python 3.7 syntax and APIs (Raspberry Pi OS Lite buster has 3.7 and nothing from PyPI).

Usage on the target:

    python3 kernel_check.py                        # the running machine: its config + live cgroups
    python3 kernel_check.py --config PATH          # a config copied from the target (plain or gzipped)
    python3 kernel_check.py --crio-version 1.18.0  # requirements of that release (default: the
                                                   # installed `crio --version`, else any >= 1.18.1)
    python3 kernel_check.py --json                 # machine-readable report on stdout
    python3 kernel_check.py --quiet-warn           # for the deb postinst: prints only warnings
                                                   # (to stderr), always exits 0
    python3 kernel_check.py --root DIR             # read /proc, /sys, /boot, /lib under DIR (tests)

Exit status: 0 every required option is there; 1 something required is missing or disabled;
2 the check could not run (no readable kernel config, or a bad argument).

Why hugetlb: CRI-O 1.18.0 (and 1.18.0-rc1) refused to create any container when the cgroup v1
hugetlb hierarchy /sys/fs/cgroup/hugetlb was absent (cri-o/cri-o#3717), and Raspberry Pi kernels
were built without CONFIG_CGROUP_HUGETLB. 1.18.1 made it non-fatal (cri-o/cri-o#3721).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

EXIT_OK, EXIT_MISSING, EXIT_UNCHECKED = 0, 1, 2
HUGETLB_FIXED_IN = "1.18.1"
OK_STATUSES = ("enabled", "module")
PROBLEM_STATUSES = ("missing", "disabled", "mismatch")  # "unknown" (live state unreadable) is neither
PI_CMDLINE_FIX = "cgroup_enable=memory cgroup_memory=1"
PI_CMDLINE_FILES = ("/boot/firmware/cmdline.txt", "/boot/cmdline.txt")
GROUP_ORDER = ("hugetlb", "namespaces", "cgroups", "security", "storage", "network", "netfilter", "platform")


class KernelConfigError(Exception):
    """No kernel configuration could be read; the check cannot give a verdict."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return "{}\n  hint: {}".format(self.message, self.hint) if self.hint else self.message


# ---------------------------------------------------------------- versions (no `packaging` here)

Version = Tuple[int, int, int, int, int]
STAGE_RANK = {"dev": 0, "alpha": 1, "beta": 2, "rc": 3}
RELEASE_RANK = 9
VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-~.]?(dev|alpha|beta|rc)\.?(\d*))?([+].*)?$")


def parse_version(text: str) -> Version:
    """'1.18.0' -> (1, 18, 0, 9, 0); '1.18.0-rc1' -> (1, 18, 0, 3, 1): pre-releases sort first."""
    match = VERSION_RE.match(text.strip())
    if not match:
        raise ValueError("{!r} is not a CRI-O version like 1.18.6 or 1.18.0-rc1".format(text))
    major, minor, patch, stage, number = match.group(1, 2, 3, 4, 5)
    rank = STAGE_RANK[stage] if stage else RELEASE_RANK
    return int(major), int(minor), int(patch), rank, int(number or 0)


def needs_hugetlb(version: Optional[str]) -> bool:
    """Exactly the releases that refuse to run without the hugetlb cgroup: 1.18.0-rc1 .. 1.18.0."""
    if version is None:
        return False
    return parse_version("1.18.0-rc1") <= parse_version(version) <= parse_version("1.18.0")


# ---------------------------------------------------------------- reading a kernel config


def read_config_text(path: Union[str, Path]) -> str:
    """The text of a kernel config file, gunzipped when it starts with the gzip magic."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KernelConfigError("{}: no such file".format(path), "copy the config from the target: /proc/config.gz or /boot/config-$(uname -r)") from None
    except IsADirectoryError:
        raise KernelConfigError("{}: is a directory, not a kernel config file".format(path), "pass the config file itself") from None
    except PermissionError:
        raise KernelConfigError("{}: cannot be read because permission is denied".format(path), "run as root or copy it somewhere readable") from None
    if data[:2] == b"\x1f\x8b":
        data = gunzip(path, data)
    return data.decode("utf-8", errors="replace")


def gunzip(path: Path, data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as error:  # OSError covers gzip.BadGzipFile (3.8+)
        raise KernelConfigError(
            "{}: cannot be read because it is a truncated or corrupt gzip file ({})".format(path, error),
            "copy it again, e.g. `cat /proc/config.gz > config.gz` on the target",
        ) from None


CONFIG_LINE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
NOT_SET_LINE = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_config(text: str, source: str = "kernel config") -> Dict[str, str]:
    """`CONFIG_X=y` -> {'CONFIG_X': 'y'}; `# CONFIG_X is not set` -> 'n'; an absent option is absent."""
    if not text.strip():
        raise KernelConfigError("{}: is empty".format(source), "copy the config again; on the target it is /proc/config.gz or /boot/config-$(uname -r)")
    options = {}  # type: Dict[str, str]
    for line in text.splitlines():
        line = line.strip()
        match = CONFIG_LINE.match(line) or NOT_SET_LINE.match(line)
        if match:
            options[match.group(1)] = match.group(2).strip('"') if match.re is CONFIG_LINE else "n"
    if not options:
        raise KernelConfigError(
            "{}: is not a kernel config because it has no CONFIG_ lines".format(source),
            "on a Raspberry Pi, /boot/config.txt is the firmware's settings, not the kernel's: "
            "run `sudo modprobe configs` and copy /proc/config.gz",
        )
    return options


def config_candidates(root: Path, release: str) -> List[Path]:
    """Where distributions keep the running kernel's config, most trustworthy first."""
    places = [
        "proc/config.gz",
        "boot/config-{r}", "lib/modules/{r}/config", "usr/lib/modules/{r}/config",
        "usr/lib/ostree-boot/config-{r}", "usr/lib/kernel/config-{r}",
        "usr/src/linux-headers-{r}/.config", "usr/src/linux-{r}/.config", "usr/src/linux/.config",
        "boot/config",
    ]
    return [root / p.format(r=release) for p in places]


def running_release(root: Path) -> str:
    text = read_small(root / "proc/sys/kernel/osrelease")
    return text.strip() if text else os.uname().release


def find_config(root: Path) -> Tuple[Path, Dict[str, str]]:
    """The first readable config of the running kernel, parsed."""
    candidates = config_candidates(root, running_release(root))
    last_error = None  # type: Optional[KernelConfigError]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            return path, parse_config(read_config_text(path), str(path))
        except KernelConfigError as error:
            last_error = error
    if last_error:
        raise last_error
    raise KernelConfigError(
        "no kernel config found because none of these exists: {}".format(", ".join(str(p) for p in candidates[:4]) + ", ..."),
        "on Raspberry Pi OS run `sudo modprobe configs` to get /proc/config.gz, or pass --config PATH",
    )


# ---------------------------------------------------------------- live state of the running machine


@dataclass(frozen=True)
class LiveState:
    controllers: Optional[Dict[str, bool]]  # cgroup controller -> enabled now; None when unreadable
    cgroup_v2: bool                         # /sys/fs/cgroup is the unified hierarchy
    hugetlb_hierarchy: bool                 # /sys/fs/cgroup/hugetlb exists (what 1.18.0 looks for)
    cmdline: str
    cmdline_txt: Optional[str]              # the Pi's cmdline.txt, if this is a Pi
    machine: str                            # uname -m
    userland_arch: Optional[str]            # dpkg --print-architecture, if dpkg exists
    userland_bits: int


def read_small(path: Path) -> Optional[str]:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def read_proc_cgroups(root: Path) -> Optional[Dict[str, bool]]:
    """/proc/cgroups: '#subsys_name hierarchy num_cgroups enabled' -> {name: enabled}."""
    text = read_small(root / "proc/cgroups")
    if text is None:
        return None
    controllers = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 4 and not line.startswith("#"):
            controllers[fields[0]] = fields[3] == "1"
    return controllers


def read_cgroup2_controllers(root: Path) -> Optional[Dict[str, bool]]:
    """cgroup v2's root cgroup.controllers lists the controllers the kernel has and enabled."""
    text = read_small(root / "sys/fs/cgroup/cgroup.controllers")
    if text is None:
        return None
    names = text.split()
    known = read_proc_cgroups(root) or {}
    return dict({name: False for name in known}, **{name: True for name in names})


def read_userland_arch() -> Optional[str]:
    """dpkg's architecture (arm64, armhf, ...), or None without dpkg."""
    if not shutil.which("dpkg"):
        return None
    try:
        result = subprocess.run(["dpkg", "--print-architecture"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                universal_newlines=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def find_pi_cmdline(root: Path) -> Optional[str]:
    for name in PI_CMDLINE_FILES:
        if (root / name.lstrip("/")).is_file():
            return name
    return None


def read_live_state(root: Union[str, Path] = "/", machine: Optional[str] = None, userland_arch: Optional[str] = None) -> LiveState:
    """The cgroup controllers, command line and architectures of the machine whose /proc is under root."""
    root = Path(root)
    v2 = (root / "sys/fs/cgroup/cgroup.controllers").is_file()
    arch = userland_arch if userland_arch is not None else read_userland_arch()
    return LiveState(
        controllers=read_cgroup2_controllers(root) if v2 else read_proc_cgroups(root),
        cgroup_v2=v2,
        hugetlb_hierarchy=(root / "sys/fs/cgroup/hugetlb").is_dir(),
        cmdline=(read_small(root / "proc/cmdline") or "").strip(),
        cmdline_txt=find_pi_cmdline(root),
        machine=machine or os.uname().machine,
        userland_arch=arch,
        userland_bits=DEB_ARCH_BITS.get(arch or "", 64 if sys.maxsize > 2 ** 32 else 32),
    )


DEB_ARCH_BITS = {"arm64": 64, "amd64": 64, "ppc64el": 64, "s390x": 64, "riscv64": 64,
                 "armhf": 32, "armel": 32, "i386": 32}
KERNEL_64BIT = ("aarch64", "arm64", "x86_64", "ppc64le", "s390x", "riscv64")


# ---------------------------------------------------------------- rules


Requirement = Union[bool, Callable[[Optional[str]], bool]]
HUGETLB_WHY = ("1.18.0 and 1.18.0-rc1 refuse to create containers without the hugetlb cgroup "
               "(cri-o#3717); fixed in {}".format(HUGETLB_FIXED_IN))
HUGETLB_ENABLE = "rebuild the kernel with CONFIG_HUGETLBFS=y and CONFIG_CGROUP_HUGETLB=y"
HUGETLB_MOUNT = ("mount the controller the kernel already has: `mkdir /sys/fs/cgroup/hugetlb && "
                 "mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb` (systemd does this at boot)")


@dataclass(frozen=True)
class Rule:
    option: str
    group: str
    purpose: str
    required: Requirement = True
    alternatives: Tuple[str, ...] = ()   # other options that do the same job
    hint: str = ""

    def is_required(self, crio_version: Optional[str]) -> bool:
        return self.required(crio_version) if callable(self.required) else self.required


RULES = (
    Rule("CONFIG_HUGETLBFS", "hugetlb", "huge pages, which the hugetlb cgroup limits", needs_hugetlb),
    Rule("CONFIG_CGROUP_HUGETLB", "hugetlb", "hugetlb cgroup controller (hugepage limits per container)", needs_hugetlb),
    Rule("CONFIG_NAMESPACES", "namespaces", "namespaces at all"),
    Rule("CONFIG_NET_NS", "namespaces", "network namespace: each pod's own network stack"),
    Rule("CONFIG_PID_NS", "namespaces", "PID namespace: each pod's own process tree"),
    Rule("CONFIG_IPC_NS", "namespaces", "IPC namespace: shared memory private to a pod"),
    Rule("CONFIG_UTS_NS", "namespaces", "UTS namespace: each pod's own hostname"),
    Rule("CONFIG_USER_NS", "namespaces", "user namespace: user-remapped pods (not used by default)", False),
    Rule("CONFIG_POSIX_MQUEUE", "namespaces", "POSIX message queues: runc mounts /dev/mqueue in every container"),
    Rule("CONFIG_CGROUPS", "cgroups", "control groups at all"),
    Rule("CONFIG_CGROUP_SCHED", "cgroups", "cpu controller: CPU shares for pod requests"),
    Rule("CONFIG_CFS_BANDWIDTH", "cgroups", "CPU quota: pods with CPU limits fail to start without it", False),
    Rule("CONFIG_CGROUP_CPUACCT", "cgroups", "cpuacct controller: CPU usage statistics (cgroup v1)", False),
    Rule("CONFIG_CPUSETS", "cgroups", "cpuset controller: pinning containers to CPUs"),
    Rule("CONFIG_MEMCG", "cgroups", "memory controller: container memory limits and OOM handling"),
    Rule("CONFIG_CGROUP_PIDS", "cgroups", "pids controller: CRI-O's pids_limit (default 1024)"),
    Rule("CONFIG_CGROUP_DEVICE", "cgroups", "devices controller: which device nodes a container may open"),
    Rule("CONFIG_CGROUP_FREEZER", "cgroups", "freezer controller: pausing and killing all of a container (cgroup v1)"),
    Rule("CONFIG_CGROUP_BPF", "cgroups", "device control under cgroup v2", False),
    Rule("CONFIG_SECCOMP", "security", "seccomp: the default syscall filter CRI-O applies"),
    Rule("CONFIG_SECCOMP_FILTER", "security", "seccomp BPF filters (the profile itself)"),
    Rule("CONFIG_OVERLAY_FS", "storage", "overlayfs: CRI-O's overlay storage driver (modprobe overlay)"),
    Rule("CONFIG_VETH", "network", "veth pairs: the bridge plugin's link from pod to host"),
    Rule("CONFIG_BRIDGE", "network", "Linux bridge: the bridge plugin's cni0"),
    Rule("CONFIG_BRIDGE_NETFILTER", "network", "br_netfilter: iptables sees bridged pod traffic (Kubernetes services)"),
    Rule("CONFIG_IP_NF_IPTABLES", "netfilter", "iptables: bridge ipMasq and portmap rules", alternatives=("CONFIG_NFT_COMPAT",)),
    Rule("CONFIG_IP_NF_NAT", "netfilter", "nat table: masquerade and host-port DNAT", alternatives=("CONFIG_NFT_NAT",)),
    Rule("CONFIG_IP_NF_TARGET_MASQUERADE", "netfilter", "MASQUERADE: pods reach out through the host's address (bridge ipMasq)",
         alternatives=("CONFIG_NETFILTER_XT_TARGET_MASQUERADE", "CONFIG_NFT_MASQ")),
    Rule("CONFIG_NETFILTER_XT_MATCH_COMMENT", "netfilter", "comment match: the bridge plugin labels its masquerade rules"),
    Rule("CONFIG_NETFILTER_XT_MATCH_MULTIPORT", "netfilter", "multiport match: portmap plugin (hostPort)", False),
    Rule("CONFIG_NETFILTER_XT_MATCH_ADDRTYPE", "netfilter", "addrtype match: portmap DNATs only traffic to local addresses", False),
    Rule("CONFIG_NETFILTER_XT_MARK", "netfilter", "MARK target and mark match: portmap masquerades hairpin traffic", False,
         alternatives=("CONFIG_NETFILTER_XT_TARGET_MARK",)),
    Rule("CONFIG_NETFILTER_XT_MATCH_CONNTRACK", "netfilter", "conntrack match: firewall plugin lets replies back in", False),
    Rule("CONFIG_IP_NF_FILTER", "netfilter", "filter table: firewall plugin", False, alternatives=("CONFIG_NFT_COMPAT",)),
)


# ---------------------------------------------------------------- findings


@dataclass(frozen=True)
class Finding:
    name: str        # CONFIG_X, or what was looked at on the live machine
    group: str
    required: bool
    status: str      # enabled | module | missing | disabled | mismatch | unknown
    detail: str      # what was seen: '=y', '=m', 'is not set', 'absent', ...
    purpose: str
    hint: str = ""

    @property
    def blocking(self) -> bool:
        return self.required and self.status in PROBLEM_STATUSES


def option_state(config: Dict[str, str], rule: Rule) -> Tuple[str, str]:
    """(status, detail) of the best of a rule's options: enabled beats module beats missing."""
    states = [single_option_state(config, name) for name in (rule.option,) + rule.alternatives]
    for wanted in OK_STATUSES:
        for name, (status, detail) in zip((rule.option,) + rule.alternatives, states):
            if status == wanted:
                return status, detail if name == rule.option else "{} (via {})".format(detail, name)
    return states[0]


def single_option_state(config: Dict[str, str], name: str) -> Tuple[str, str]:
    value = config.get(name)
    if value is None:
        return "missing", "absent"
    if value == "n":
        return "missing", "is not set"
    if value == "m":
        return "module", "=m"
    return "enabled", "=" + value


def config_hint(rule: Rule, status: str, crio_version: Optional[str]) -> str:
    if rule.group == "hugetlb":
        return hugetlb_hint(status, crio_version)
    if status == "module":
        return "built as a module: loaded on demand (or `modprobe` it at boot)"
    if status == "missing":
        alternatives = " (or {})".format(", ".join(rule.alternatives)) if rule.alternatives else ""
        return "rebuild the kernel with {}=y or =m{}".format(rule.option, alternatives)
    return ""


def hugetlb_hint(status: str, crio_version: Optional[str], enable: str = HUGETLB_ENABLE) -> str:
    """Says whether this release needs hugetlb, which release fixed that, and how to enable it."""
    if needs_hugetlb(crio_version):
        if status in OK_STATUSES:
            return "required by CRI-O {} (only 1.18.0 and 1.18.0-rc1 need it; fixed in {})".format(crio_version, HUGETLB_FIXED_IN)
        return "required by CRI-O {}: {}. Build CRI-O {} or newer, or {}".format(crio_version, HUGETLB_WHY, HUGETLB_FIXED_IN, enable)
    why = "optional for CRI-O {}: only 1.18.0 and 1.18.0-rc1 need it (fixed in {})".format(
        crio_version or ">= " + HUGETLB_FIXED_IN, HUGETLB_FIXED_IN)
    return why if status in OK_STATUSES else "{}; to enable: {}".format(why, enable)


def config_findings(config: Dict[str, str], crio_version: Optional[str]) -> List[Finding]:
    findings = []
    for rule in RULES:
        status, detail = option_state(config, rule)
        findings.append(Finding(rule.option, rule.group, rule.is_required(crio_version), status, detail,
                                rule.purpose, config_hint(rule, status, crio_version)))
    return findings


LIVE_CONTROLLERS = (  # (controller, rule it is the live side of, only meaningful on cgroup v1)
    ("hugetlb", "CONFIG_CGROUP_HUGETLB", False),
    ("cpu", "CONFIG_CGROUP_SCHED", False),
    ("cpuset", "CONFIG_CPUSETS", False),
    ("memory", "CONFIG_MEMCG", False),
    ("pids", "CONFIG_CGROUP_PIDS", False),
    ("devices", "CONFIG_CGROUP_DEVICE", True),
    ("freezer", "CONFIG_CGROUP_FREEZER", True),
)
RULES_BY_OPTION = {rule.option: rule for rule in RULES}


def live_findings(live: LiveState, crio_version: Optional[str]) -> List[Finding]:
    findings = [controller_finding(live, name, RULES_BY_OPTION[option], crio_version)
                for name, option, v1_only in LIVE_CONTROLLERS if not (v1_only and live.cgroup_v2)]
    if not live.cgroup_v2:
        findings.insert(1, hugetlb_hierarchy_finding(live, crio_version))
    findings.append(architecture_finding(live))
    return findings


def controller_finding(live: LiveState, controller: str, rule: Rule, crio_version: Optional[str]) -> Finding:
    name = "{} cgroup (live)".format(controller)
    source = "/sys/fs/cgroup/cgroup.controllers" if live.cgroup_v2 else "/proc/cgroups"
    purpose = "{} controller enabled at runtime ({})".format(controller, source)
    required = rule.is_required(crio_version)
    if live.controllers is None:
        return Finding(name, rule.group, required, "unknown", "unreadable", purpose)
    if controller not in live.controllers:
        status, detail = "missing", "not listed"
    elif live.controllers[controller]:
        status, detail = "enabled", "enabled"
    else:
        status, detail = "disabled", "disabled"
    return Finding(name, rule.group, required, status, detail, purpose, controller_hint(live, controller, status, crio_version))


def controller_hint(live: LiveState, controller: str, status: str, crio_version: Optional[str]) -> str:
    if controller == "hugetlb":
        return hugetlb_hint(status, crio_version)
    if status == "enabled":
        return ""
    if controller == "memory":
        return memory_cmdline_hint(live)
    if status == "disabled":
        return "the kernel command line disables it: remove cgroup_disable={} and reboot".format(controller)
    return "rebuild the kernel with the {} controller".format(controller)


def memory_cmdline_hint(live: LiveState) -> str:
    where = live.cmdline_txt or " or ".join(PI_CMDLINE_FILES)
    seen = " (the command line has cgroup_disable=memory)" if "cgroup_disable=memory" in live.cmdline.split() else ""
    return "Raspberry Pi kernels disable the memory cgroup by default{}: add `{}` to the single line in {} and reboot".format(
        seen, PI_CMDLINE_FIX, where)


def hugetlb_hierarchy_finding(live: LiveState, crio_version: Optional[str]) -> Finding:
    status = "enabled" if live.hugetlb_hierarchy else "missing"
    controller_on = bool(live.controllers and live.controllers.get("hugetlb"))
    enable = HUGETLB_MOUNT if controller_on else HUGETLB_ENABLE
    return Finding("/sys/fs/cgroup/hugetlb", "hugetlb", needs_hugetlb(crio_version), status,
                   "present" if live.hugetlb_hierarchy else "absent",
                   "cgroup v1 hugetlb hierarchy, which 1.18.0 reads for every container",
                   hugetlb_hint(status, crio_version, enable))


def architecture_finding(live: LiveState) -> Finding:
    detail = "{} / {}".format(live.machine, live.userland_arch or "{}-bit".format(live.userland_bits))
    purpose = "the arm64 packages need a 64-bit kernel (uname -m) and a 64-bit userland (dpkg)"
    if live.machine not in KERNEL_64BIT:
        return Finding("64-bit kernel and userland", "platform", True, "missing", detail, purpose,
                       "boot the 64-bit kernel: `arm_64bit=1` in config.txt (Pi 3, 4, 5), or install Raspberry Pi OS (64-bit)")
    if live.userland_bits != 64:
        return Finding("64-bit kernel and userland", "platform", True, "mismatch", detail, purpose,
                       "a 32-bit userland on a 64-bit kernel cannot install arm64 packages: install Raspberry Pi OS (64-bit)")
    return Finding("64-bit kernel and userland", "platform", True, "enabled", detail, purpose)


def check(config: Dict[str, str], live: Optional[LiveState], crio_version: Optional[str]) -> List[Finding]:
    """Every finding for a parsed config (and, for the running machine, its live state), hugetlb first."""
    findings = config_findings(config, crio_version) + (live_findings(live, crio_version) if live else [])
    return sorted(findings, key=lambda f: GROUP_ORDER.index(f.group))


# ---------------------------------------------------------------- one report


@dataclass
class Report:
    crio_version: Optional[str]
    config_source: Optional[str]
    findings: List[Finding]
    error: Optional[KernelConfigError] = None

    @property
    def exit_code(self) -> int:
        if self.error:
            return EXIT_UNCHECKED
        return EXIT_MISSING if any(f.blocking for f in self.findings) else EXIT_OK

    @property
    def verdict(self) -> str:
        return {EXIT_OK: "ok", EXIT_MISSING: "required-missing", EXIT_UNCHECKED: "no-config"}[self.exit_code]

    def to_dict(self) -> dict:
        return {
            "crio_version": self.crio_version,
            "config_source": self.config_source,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "error": self.error.message if self.error else None,
            "hint": self.error.hint if self.error else None,
            "findings": [dict(asdict(f), blocking=f.blocking) for f in self.findings],
        }


def run_check(config_path: Optional[str], crio_version: Optional[str], root: Union[str, Path] = "/",
              machine: Optional[str] = None, userland_arch: Optional[str] = None) -> Report:
    """Check a config file (config_path), or the machine whose /proc, /sys and /boot are under root."""
    live = None if config_path else read_live_state(root, machine, userland_arch)
    try:
        if config_path:
            source, config = str(config_path), parse_config(read_config_text(config_path), str(config_path))
        else:
            found, config = find_config(Path(root))
            source = str(found)
    except KernelConfigError as error:
        return Report(crio_version, None, live_findings(live, crio_version) if live else [], error)
    return Report(crio_version, source, check(config, live, crio_version))


def installed_crio_version() -> Optional[str]:
    """The version `crio --version` prints, when CRI-O is installed."""
    if not shutil.which("crio"):
        return None
    try:
        result = subprocess.run(["crio", "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"[Vv]ersion:?\s+v?(\d+\.\d+\.\d+\S*)", result.stdout)
    return match.group(1) if match else None


# ---------------------------------------------------------------- standalone output (no rich here)


STATUS_MARK = {"enabled": "ok", "module": "ok (m)", "missing": "MISSING", "disabled": "DISABLED",
               "mismatch": "MISMATCH", "unknown": "?"}


def status_label(finding: Finding) -> str:
    label = STATUS_MARK[finding.status]
    return label if finding.required or finding.status in OK_STATUSES + ("unknown",) else label.lower()


def format_text(report: Report) -> str:
    lines = ["Kernel check for CRI-O {}".format(report.crio_version or ">= " + HUGETLB_FIXED_IN),
             "config: {}".format(report.config_source or "(none)"), ""]
    if not report.findings:
        return "\n".join(lines[:2])
    rows = [("status", "option", "need", "seen", "for")]
    rows += [(status_label(f), f.name, "required" if f.required else "optional", f.detail, f.purpose) for f in report.findings]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
        finding = report.findings[index - 1] if index else None
        if finding and shows_hint(finding):
            lines.append(" " * (widths[0] + 2) + "-> " + finding.hint)
    if not report.error:
        lines += ["", summary(report)]
    return "\n".join(lines)


def shows_hint(finding: Finding) -> bool:
    """hugetlb always says which release needs it; other rows only explain problems and modules."""
    return bool(finding.hint) and (finding.group == "hugetlb" or finding.status not in OK_STATUSES)


def summary(report: Report) -> str:
    if report.error:
        return "cannot check: {}".format(report.error)
    blocking = [f.name for f in report.findings if f.blocking]
    version = report.crio_version or ">= " + HUGETLB_FIXED_IN
    if blocking:
        return "NOT READY: CRI-O {} needs {}".format(version, ", ".join(blocking))
    return "ready: this kernel has everything CRI-O {} needs".format(version)


def warnings(report: Report) -> List[str]:
    """The lines --quiet-warn prints: why the check could not run, then one per required gap (live ones
    too: a Pi without /proc/config.gz still hears that its memory cgroup is off)."""
    lines = []
    if report.error:
        lines.append("warning: could not check the kernel config for CRI-O: {} ({})".format(report.error.message, report.error.hint))
    lines += ["warning: CRI-O may not run on this kernel: {} is {} ({}){}".format(
        f.name, f.status, f.purpose, "; " + f.hint if f.hint else "") for f in report.findings if f.blocking]
    return lines


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kernel_check.py", description="Can this kernel run CRI-O? (hugetlb first)")
    parser.add_argument("--config", help="a kernel config copied from the target (plain or gzipped); default: the running kernel's")
    parser.add_argument("--crio-version", help="the CRI-O release to check for; default: the installed crio, else any >= " + HUGETLB_FIXED_IN)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet-warn", action="store_true", help="print only warnings and always exit 0 (deb postinst)")
    parser.add_argument("--root", default="/", help="read /proc, /sys, /boot and /lib under this directory")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    version = args.crio_version or installed_crio_version()
    if version is not None:
        try:
            parse_version(version)
        except ValueError as error:
            print("error: --crio-version {}".format(error), file=sys.stderr)
            return 0 if args.quiet_warn else EXIT_UNCHECKED
    report = run_check(args.config, version, args.root)
    if args.quiet_warn:
        for line in warnings(report):
            print(line, file=sys.stderr)
        return 0
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_text(report))
    if report.error and not args.json:
        print("error: " + summary(report), file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
