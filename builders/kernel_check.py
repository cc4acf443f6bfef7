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

Today's Raspberry Pi (what the live part of the check knows):
- memory cgroup: from rpi-6.12.y on, the device tree's bootargs add `cgroup_disable=memory`
  (raspberrypi/linux#6439, #6980) and a fresh Raspberry Pi OS image does not undo it (RPi-Distro/pi-gen#917).
  The firmware puts cmdline.txt after the device tree's arguments and the last switch wins, so the fix
  is ` cgroup_enable=memory` at the end of the single line of /boot/firmware/cmdline.txt (bullseye:
  /boot/cmdline.txt), then a reboot; `cgroup_memory=1` is not needed. Only Raspberry Pi's own kernels
  (uname -r with +rpt, -rpi-, -v8, -v7l...) know `cgroup_enable=`. The check reads the order in
  /proc/cmdline, not cmdline.txt, and judges memory by cgroup v2's cgroup.controllers: 6.12 kernels
  do not build the v1 memory controller (CONFIG_MEMCG_V1), so /proc/cgroups never lists memory there.
- page size: the Pi 5's default kernel (kernel_2712.img) has 16K pages. CRI-O, runc, crun and conmon
  run on it, but many images do not (jemalloc: "Unsupported system page size"): a warning, with
  `kernel=kernel8.img` in config.txt as the way back to 4K. A 32-bit userland needs 4K pages.
- 32-bit Raspberry Pi OS on a Pi 4 or 5 boots the 64-bit kernel: dpkg's architecture (armhf), not
  uname -m (aarch64), says which packages to install and which images (linux/arm) run. A 32-bit ARMv7
  kernel (armv7l: a Pi 2, 32-bit Raspberry Pi OS, Debian's armmp) runs the armhf packages; an ARMv6 one
  (Pi 1, Zero) is not served, the armhf packages being built for ARMv7.
"""
from __future__ import annotations

import argparse
import gzip
import io
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
WARNING = "warning"  # works, but worth knowing (16K pages, a 32-bit userland): never blocks
PI_CMDLINE_FIX = "cgroup_enable=memory"
PI_CMDLINE_FILES = ("/boot/firmware/cmdline.txt", "/boot/cmdline.txt")  # bookworm and later; bullseye and older
PI_CMDLINE_STUB = "DO NOT EDIT"  # bookworm/trixie's /boot/cmdline.txt only points at /boot/firmware/cmdline.txt
# Raspberry Pi's own kernels, the only ones with `cgroup_enable=`: 6.12.34+rpt-rpi-2712, 6.1.0-rpi7-rpi-v8,
# 5.10.103-v7l+, 6.6.20-v8-16k+ (not Debian's 6.12.38+deb13-arm64 or Ubuntu's -raspi)
PI_RELEASE = re.compile(r"\+rpt|-rpi-|-v[678]l?(?:[-_+]|$)|-2712")
PI_LOCALVERSION = re.compile(r"^-v[678]|-2712|rpi")
SMALL_PAGE = 4096
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
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise KernelConfigError("{}: no such file".format(path), "copy the config from the target: /proc/config.gz or /boot/config-$(uname -r)") from None
    except IsADirectoryError:
        raise KernelConfigError("{}: is a directory, not a kernel config file".format(path), "pass the config file itself") from None
    except PermissionError:
        raise KernelConfigError("{}: cannot be read because permission is denied".format(path), "run as root or copy it somewhere readable") from None
    if data[:2] == b"\x1f\x8b":
        data = gunzip(path, data)
    if len(data) > MAX_CONFIG_BYTES:
        raise KernelConfigError(
            "{}: is not a kernel config: it is over {} MiB, and a kernel config is a few hundred KB".format(path, MAX_CONFIG_BYTES >> 20),
            "pass the config itself: /proc/config.gz or /boot/config-$(uname -r) from the target",
        )
    return data.decode("utf-8", errors="replace")


MAX_CONFIG_BYTES = 16 << 20  # a kernel config is ~250 KB; reading stops here (--config /dev/zero must end)


def gunzip(path: Path, data: bytes) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as unpacked:
            return unpacked.read(MAX_CONFIG_BYTES + 1)
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
    cmdline: str                            # /proc/cmdline: what the kernel was booted with, in order
    cmdline_txt: Optional[str]              # the Pi's cmdline.txt (the one the firmware reads), if this is a Pi
    machine: str                            # uname -m
    userland_arch: Optional[str]            # dpkg --print-architecture, if dpkg exists
    userland_bits: int
    release: str = ""                       # uname -r
    page_size: Optional[int] = None         # os.sysconf("SC_PAGE_SIZE"); None when unknown
    cmdline_txt_text: Optional[str] = None  # that cmdline.txt's contents, when readable


def read_small(path: Path) -> Optional[str]:
    try:
        with path.open("rb") as handle:
            return handle.read(1 << 20).decode("utf-8", errors="replace")
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


def find_pi_cmdline(root: Path) -> Tuple[Optional[str], Optional[str]]:
    """(path, contents) of the cmdline.txt the Pi firmware reads: /boot/firmware/cmdline.txt since bookworm,
    /boot/cmdline.txt before. Bookworm's and trixie's /boot/cmdline.txt is a "DO NOT EDIT" pointer."""
    firmware, legacy = PI_CMDLINE_FILES
    for name in PI_CMDLINE_FILES:
        path = root / name.lstrip("/")
        if path.is_file():
            text = read_small(path)
            if name == legacy and text is not None and text.lstrip().startswith(PI_CMDLINE_STUB):
                return firmware, None  # the real file is on the firmware partition, which is not mounted
            return name, text
    return None, None


def system_page_size() -> Optional[int]:
    try:
        return int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def read_live_state(root: Union[str, Path] = "/", machine: Optional[str] = None, userland_arch: Optional[str] = None,
                    page_size: Optional[int] = None) -> LiveState:
    """The cgroup controllers, command lines, page size and architectures of the machine whose /proc is under
    root. machine (uname -m), userland_arch (dpkg) and page_size default to this machine's."""
    root = Path(root)
    v2 = (root / "sys/fs/cgroup/cgroup.controllers").is_file()
    arch = userland_arch if userland_arch is not None else read_userland_arch()
    cmdline_txt, cmdline_txt_text = find_pi_cmdline(root)
    return LiveState(
        controllers=read_cgroup2_controllers(root) if v2 else read_proc_cgroups(root),
        cgroup_v2=v2,
        hugetlb_hierarchy=(root / "sys/fs/cgroup/hugetlb").is_dir(),
        cmdline=(read_small(root / "proc/cmdline") or "").strip(),
        cmdline_txt=cmdline_txt,
        machine=machine or os.uname().machine,
        userland_arch=arch,
        userland_bits=DEB_ARCH_BITS.get(arch or "", 64 if sys.maxsize > 2 ** 32 else 32),
        release=running_release(root),
        page_size=page_size if page_size is not None else system_page_size(),
        cmdline_txt_text=cmdline_txt_text,
    )


DEB_ARCH_BITS = {"arm64": 64, "amd64": 64, "ppc64el": 64, "s390x": 64, "riscv64": 64,
                 "armhf": 32, "armel": 32, "i386": 32}
KERNEL_64BIT = ("aarch64", "arm64", "x86_64", "ppc64le", "s390x", "riscv64")
KERNEL_ARM64 = ("aarch64", "arm64")
KERNEL_ARMV7 = ("armv7l",)
OCI_PLATFORM = {"armhf": "linux/arm (arm/v7, or arm/v6 on a Pi 1 or Zero)", "armel": "linux/arm/v5", "i386": "linux/386"}


# ---------------------------------------------------------------- what a Raspberry Pi's kernel and command line say


def is_pi_kernel(release: str) -> bool:
    """uname -r of a Raspberry Pi kernel: the only kernels that understand `cgroup_enable=memory`."""
    return bool(PI_RELEASE.search(release))


def is_pi_config(config: Dict[str, str]) -> bool:
    """A Raspberry Pi kernel's config, by its CONFIG_LOCALVERSION (-v8, -v8-16k, -v7l, ...)."""
    return bool(PI_LOCALVERSION.search(config.get("CONFIG_LOCALVERSION", "")))


def kernel_version(release: str) -> Tuple[int, int]:
    """'6.12.34+rpt-rpi-2712' -> (6, 12); (0, 0) when unknown."""
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def memory_switches(cmdline: str) -> List[str]:
    """'enable'/'disable' for each cgroup_enable=/cgroup_disable= naming memory, in command-line order.
    The kernel applies them in that order, so the last one decides."""
    switches = []
    for token in cmdline.split():
        key, _, value = token.partition("=")
        if key in ("cgroup_enable", "cgroup_disable") and "memory" in value.split(","):
            switches.append(key[len("cgroup_"):])
    return switches


def firmware_lines(text: Optional[str]) -> List[str]:
    return [line for line in (text or "").splitlines() if line.strip()]


def firmware_dir(live: LiveState) -> str:
    """Where config.txt lives next to the cmdline.txt the firmware reads (default: bookworm's /boot/firmware)."""
    return (live.cmdline_txt or PI_CMDLINE_FILES[0]).rsplit("/", 1)[0]


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
    status: str      # enabled | module | missing | disabled | mismatch | unknown | warning (never blocks)
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


def config_hint(rule: Rule, status: str, crio_version: Optional[str], pi: bool = False) -> str:
    if rule.group == "hugetlb":
        return hugetlb_hint(status, crio_version, pi=pi)
    if status == "module":
        return "built as a module: loaded on demand (or `modprobe` it at boot)"
    if status == "missing":
        alternatives = " (or {})".format(", ".join(rule.alternatives)) if rule.alternatives else ""
        return "rebuild the kernel with {}=y or =m{}".format(rule.option, alternatives)
    return ""


def hugetlb_hint(status: str, crio_version: Optional[str], enable: str = HUGETLB_ENABLE, pi: bool = False) -> str:
    """Says whether this release needs hugetlb, which release fixed that, and how to enable it."""
    expected = "Raspberry Pi kernels are built without hugetlb, so this is expected there" if pi else ""
    if needs_hugetlb(crio_version):
        if status in OK_STATUSES:
            return "required by CRI-O {} (only 1.18.0 and 1.18.0-rc1 need it; fixed in {})".format(crio_version, HUGETLB_FIXED_IN)
        return "required by CRI-O {}: {}{}. Build CRI-O {} or newer, or {}".format(
            crio_version, HUGETLB_WHY, "; " + expected if expected else "", HUGETLB_FIXED_IN, enable)
    why = "optional for CRI-O {}: only 1.18.0 and 1.18.0-rc1 need it (fixed in {})".format(
        crio_version or ">= " + HUGETLB_FIXED_IN, HUGETLB_FIXED_IN)
    if status in OK_STATUSES:
        return why
    return "{}; {}{}".format(why, expected + "; " if expected else "", "to enable: " + enable)


def config_findings(config: Dict[str, str], crio_version: Optional[str], pi: Optional[bool] = None) -> List[Finding]:
    """One finding per rule; pi (a Raspberry Pi kernel) defaults to what the config's CONFIG_LOCALVERSION says."""
    pi = is_pi_config(config) if pi is None else pi
    findings = []
    for rule in RULES:
        status, detail = option_state(config, rule)
        findings.append(Finding(rule.option, rule.group, rule.is_required(crio_version), status, detail,
                                rule.purpose, config_hint(rule, status, crio_version, pi)))
    return findings


PAGE_SIZE_OPTIONS = (  # (option, value, page size in KiB): the old arm64 names and 6.10's generic ones
    ("CONFIG_ARM64_16K_PAGES", "y", 16), ("CONFIG_ARM64_64K_PAGES", "y", 64),
    ("CONFIG_PAGE_SIZE_16KB", "y", 16), ("CONFIG_PAGE_SIZE_64KB", "y", 64),
    ("CONFIG_ARM64_PAGE_SHIFT", "14", 16), ("CONFIG_ARM64_PAGE_SHIFT", "16", 64),
    ("CONFIG_PAGE_SHIFT", "14", 16), ("CONFIG_PAGE_SHIFT", "16", 64),
)
PAGE_SIZE_PURPOSE = "memory page size: 32-bit (armhf) programs need 4K pages, and many arm64 images assume them"
IMAGES_ON_LARGE_PAGES = (
    "CRI-O, runc, crun and conmon run on it, but many container images do not: programs whose jemalloc was "
    "built for 4K pages abort with '<jemalloc>: Unsupported system page size' (redis, pgcat, fluent-bit, ...), "
    "tcmalloc ones with 'MmapAligned() failed', binaries linked for 4K pages with 'ELF load command "
    "address/offset not page-aligned'")


def four_k_fix(pi: bool, config_dir: str = "/boot/firmware") -> str:
    if pi:
        return ("for 4K pages add `kernel=kernel8.img` to {}/config.txt and reboot (the common 64-bit Raspberry Pi "
                "kernel; afterwards uname -r ends in -rpi-v8 and `getconf PAGESIZE` prints 4096)").format(config_dir)
    return "for 4K pages boot a kernel built with CONFIG_ARM64_4K_PAGES=y"


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def config_page_finding(config: Dict[str, str]) -> Optional[Finding]:
    """For a config file alone (no live machine): a kernel built with pages larger than 4K, e.g. the Pi 5's."""
    for option, value, kib in PAGE_SIZE_OPTIONS:
        if config.get(option) == value:
            pi = is_pi_config(config)
            kernel = "a {}K-page kernel{}".format(kib, " (the Pi 5's default kernel_2712.img, bcm2712_defconfig)" if pi else "")
            return Finding("page size", "platform", False, WARNING, "{}K ({}={})".format(kib, option, value), PAGE_SIZE_PURPOSE,
                           "{}: for an arm64 userland, {}; a 32-bit (armhf) userland cannot use it at all. {}".format(
                               kernel, IMAGES_ON_LARGE_PAGES, sentence(four_k_fix(pi))))
    return None


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
    findings.append(page_size_finding(live))
    return findings


def controller_finding(live: LiveState, controller: str, rule: Rule, crio_version: Optional[str]) -> Finding:
    name = "{} cgroup (live)".format(controller)
    source = "/sys/fs/cgroup/cgroup.controllers" if live.cgroup_v2 else "/proc/cgroups"
    purpose = "{} controller enabled at runtime ({})".format(controller, source)
    required = rule.is_required(crio_version)
    if live.controllers is None:
        return Finding(name, rule.group, required, "unknown", "unreadable", purpose)
    if controller == "memory":
        status, detail, hint = memory_state(live)
        return Finding(name, rule.group, required, status, detail, purpose, hint)
    if controller not in live.controllers:
        status, detail = "missing", "not listed"
    elif live.controllers[controller]:
        status, detail = "enabled", "enabled"
    else:
        status, detail = "disabled", "disabled"
    return Finding(name, rule.group, required, status, detail, purpose, controller_hint(live, controller, status, crio_version))


def controller_hint(live: LiveState, controller: str, status: str, crio_version: Optional[str]) -> str:
    if controller == "hugetlb":
        return hugetlb_hint(status, crio_version, pi=is_pi_kernel(live.release))
    if status == "enabled":
        return ""
    if status == "disabled":
        return "the kernel command line disables it: remove cgroup_disable={} and reboot".format(controller)
    return "rebuild the kernel with the {} controller".format(controller)


def memory_state(live: LiveState) -> Tuple[str, str, str]:
    """(status, detail, hint) of the memory controller. Judged by cgroup v2's cgroup.controllers, never by
    /proc/cgroups alone: 6.12 kernels without CONFIG_MEMCG_V1 leave memory out of /proc/cgroups even when
    it works. The order of the switches in /proc/cmdline says why it is off and what fixes it."""
    assert live.controllers is not None
    listed = live.controllers.get("memory")  # True on, False listed but off, None not there at all
    if listed:
        return "enabled", "enabled", ""
    switches = memory_switches(live.cmdline)
    if not live.cgroup_v2 and listed is None and kernel_version(live.release) >= (6, 11):
        return "missing", "no cgroup v2, no v1 memory", no_v1_memory_hint(live, switches)
    if listed is False or "disable" in switches:
        return "disabled", "disabled", memory_hint(live, switches, "disabled")
    return "missing", "not listed", memory_hint(live, switches, "missing")


def cmdline_txt_where(live: LiveState) -> str:
    return live.cmdline_txt or "{} (bullseye and older: {})".format(*PI_CMDLINE_FILES)


def append_memory_fix(live: LiveState, after_disable: bool) -> str:
    where = live.cmdline_txt or PI_CMDLINE_FILES[0]
    why = "the firmware puts cmdline.txt after the device tree's arguments and the last switch wins; " if after_disable else ""
    return ("append ` {fix}` to the end of the single line in {where_long} (`sudo sed -i '1 s/$/ {fix}/' {where}`) "
            "and reboot; {why}cgroup_memory=1 is not needed").format(
                fix=PI_CMDLINE_FIX, where=where, where_long=cmdline_txt_where(live), why=why)


def memory_hint(live: LiveState, switches: List[str], status: str) -> str:
    """What turns the memory cgroup on, from the order of cgroup_enable/cgroup_disable=memory in /proc/cmdline."""
    where = cmdline_txt_where(live)
    lines = firmware_lines(live.cmdline_txt_text)
    in_file = memory_switches(lines[0]) if lines else []
    later_lines = [memory_switches(line) for line in lines[1:]]
    if switches[-1:] == ["disable"] and "enable" in switches:
        if in_file[-1:] == ["disable"]:
            return ("{w} itself has cgroup_disable=memory after cgroup_enable=memory, and the last switch wins: "
                    "remove cgroup_disable=memory from {w} so that cgroup_enable=memory ends the line, and reboot").format(w=where)
        return ("/proc/cmdline has cgroup_enable=memory, but cgroup_disable=memory comes after it and the last switch "
                "wins, so editing {} is not enough: something that runs after it adds the disable (a U-Boot, NOOBS "
                "or PINN boot chain, or a changed device tree). Make that boot chain put cgroup_enable=memory last or "
                "drop its cgroup_disable=memory, reboot, and check /proc/cmdline").format(where)
    release = live.release or "this kernel"
    if not is_pi_kernel(live.release):
        if "disable" in switches:
            return ("the command line has cgroup_disable=memory (the Raspberry Pi device tree's bootargs add it), and "
                    "{} is not a Raspberry Pi kernel (uname -r with +rpt, -rpi-, -v8 or -v7l): only those accept "
                    "cgroup_enable=memory. Boot with a device tree or bootloader setting without cgroup_disable=memory, "
                    "or boot Raspberry Pi OS's own kernel, then reboot").format(release)
        if status == "disabled":
            return "the kernel command line disables it: remove cgroup_disable=memory and reboot"
        return "rebuild the kernel with the memory controller (CONFIG_MEMCG=y)"
    if switches[-1:] == ["enable"]:
        return ("/proc/cmdline ends with cgroup_enable=memory, yet the memory controller is off: this Raspberry Pi "
                "kernel ({}) predates cgroup_enable= (6.12 builds before December 2024 log 'Unknown kernel command "
                "line parameters'): update it (`sudo apt update && sudo apt full-upgrade`) and reboot").format(release)
    if in_file[-1:] == ["enable"]:
        return ("{} already ends with cgroup_enable=memory, but the running kernel was booted without it: "
                "reboot").format(where)
    if any(found[-1:] == ["enable"] for found in later_lines):
        return ("{} has cgroup_enable=memory on a line of its own, and the firmware reads only the first line: "
                "join it to the end of the first line and reboot").format(where)
    why = ("the command line has cgroup_disable=memory, which the Raspberry Pi firmware adds from the device tree "
           "for 6.12 and later kernels (raspberrypi/linux#6980)" if "disable" in switches
           else "Raspberry Pi kernels before 6.12 disable the memory cgroup by default")
    return "{}: {}".format(why, append_memory_fix(live, "disable" in switches))


def no_v1_memory_hint(live: LiveState, switches: List[str]) -> str:
    """A cgroup v1 system on a 6.11+ kernel: no memory controller at all unless built with CONFIG_MEMCG_V1."""
    where = cmdline_txt_where(live)
    v1_switch = "systemd.unified_cgroup_hierarchy=0"
    boot_v2 = ("remove {} from {}".format(v1_switch, where) if v1_switch in live.cmdline.split()
               else "boot with the unified hierarchy that systemd mounts by default (no {} in {})".format(v1_switch, where))
    also = ""
    if is_pi_kernel(live.release) and switches[-1:] != ["enable"]:
        also = ", and append ` {}` to the end of its single line".format(PI_CMDLINE_FIX)
    return ("this system runs cgroup v1 (no /sys/fs/cgroup/cgroup.controllers), and kernels from 6.11 on have no v1 "
            "memory controller unless built with CONFIG_MEMCG_V1, which Raspberry Pi's 6.12 kernels are not, so "
            "/proc/cgroups never lists memory: use cgroup v2: {}{}; then reboot").format(boot_v2, also)


def hugetlb_hierarchy_finding(live: LiveState, crio_version: Optional[str]) -> Finding:
    status = "enabled" if live.hugetlb_hierarchy else "missing"
    controller_on = bool(live.controllers and live.controllers.get("hugetlb"))
    enable = HUGETLB_MOUNT if controller_on else HUGETLB_ENABLE
    return Finding("/sys/fs/cgroup/hugetlb", "hugetlb", needs_hugetlb(crio_version), status,
                   "present" if live.hugetlb_hierarchy else "absent",
                   "cgroup v1 hugetlb hierarchy, which 1.18.0 reads for every container",
                   hugetlb_hint(status, crio_version, enable, pi=is_pi_kernel(live.release)))


def userland_packages(live: LiveState) -> str:
    """The Debian architecture whose packages fit this userland: dpkg's, never uname -m's."""
    if live.userland_arch:
        return live.userland_arch
    if live.machine in KERNEL_ARM64 + ("armv7l", "armv6l"):
        return "arm64" if live.userland_bits == 64 else "armhf"
    return {"x86_64": "amd64"}.get(live.machine, live.machine) if live.userland_bits == 64 else "{}-bit".format(live.userland_bits)


def architecture_finding(live: LiveState) -> Finding:
    detail = "{} / {}".format(live.machine, live.userland_arch or "{}-bit".format(live.userland_bits))
    purpose = "which packages to install: the userland's architecture (dpkg), not the kernel's (uname -m), decides"
    name = "kernel and userland architecture"
    packages = userland_packages(live)
    if live.machine in KERNEL_ARMV7:
        # A 32-bit ARMv7 kernel (Pi 2, 3 and 4 with 32-bit Raspberry Pi OS, Debian's armmp): the armhf packages
        # run there (their pod test runs on Debian's armmp-lpae kernel).
        return Finding(name, "platform", True, "enabled", detail, purpose,
                       "install the armhf packages and run linux/arm/v7 images")
    if live.machine not in KERNEL_64BIT:
        return Finding(name, "platform", True, "missing", detail, purpose,
                       "an ARMv7 or 64-bit kernel: the armhf packages are built for ARMv7 (GOARM=7), so an ARMv6 Pi "
                       "(1, Zero) is not served; on a Pi 2 or later boot its ARMv7 kernel or, with `arm_64bit=1` in "
                       "config.txt (Pi 3, 4, 5), the 64-bit one")
    if live.userland_bits != 64:
        images = OCI_PLATFORM.get(packages, "32-bit")
        return Finding(name, "platform", True, WARNING, detail, purpose, (
            "a 32-bit userland on a 64-bit kernel (what the Pi 4 and 5 firmware boots for 32-bit Raspberry Pi OS): "
            "install the {p} packages, not arm64 (`dpkg --print-architecture` says {p}; uname -m's {m} does not "
            "decide), and run {i} images: an {p} runtime cannot run arm64 images (they die with SIGSYS). "
            "For arm64 packages and images, install Raspberry Pi OS (64-bit)").format(p=packages, m=live.machine, i=images))
    return Finding(name, "platform", True, "enabled", detail, purpose, "install the {} packages".format(packages))


def page_size_finding(live: LiveState) -> Finding:
    """4K pages are what everything expects. The Pi 5's kernel_2712.img has 16K: a warning for arm64, and a
    failure for a 32-bit userland, whose programs need 4K pages."""
    if live.page_size is None:
        return Finding("page size", "platform", live.userland_bits != 64, "unknown", "unreadable", PAGE_SIZE_PURPOSE)
    detail = "{} ({}K)".format(live.page_size, live.page_size // 1024)
    if live.page_size == SMALL_PAGE:
        return Finding("page size", "platform", live.userland_bits != 64, "enabled", detail, PAGE_SIZE_PURPOSE)
    pi = is_pi_kernel(live.release) or "16k" in live.release.lower()
    kernel = "a {}K-page kernel{}".format(live.page_size // 1024, " (the Pi 5's default kernel_2712.img)" if pi else "")
    fix = four_k_fix(pi, firmware_dir(live))
    if live.userland_bits != 64:
        return Finding("page size", "platform", True, "mismatch", detail, PAGE_SIZE_PURPOSE,
                       "32-bit ({}) programs need a kernel with 4K pages, and this is {}: {}".format(userland_packages(live), kernel, fix))
    if live.machine in KERNEL_ARM64:
        return Finding("page size", "platform", False, WARNING, detail, PAGE_SIZE_PURPOSE,
                       "{}: {}. {}".format(kernel, IMAGES_ON_LARGE_PAGES, sentence(fix)))
    return Finding("page size", "platform", False, "enabled", detail, PAGE_SIZE_PURPOSE)


def check(config: Dict[str, str], live: Optional[LiveState], crio_version: Optional[str]) -> List[Finding]:
    """Every finding for a parsed config (and, for the running machine, its live state), hugetlb first."""
    if live:
        findings = config_findings(config, crio_version, pi=is_pi_kernel(live.release) or is_pi_config(config))
        findings += live_findings(live, crio_version)
    else:
        page = config_page_finding(config)
        findings = config_findings(config, crio_version) + ([page] if page else [])
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
              machine: Optional[str] = None, userland_arch: Optional[str] = None, page_size: Optional[int] = None) -> Report:
    """Check a config file (config_path), or the machine whose /proc, /sys and /boot are under root
    (machine: uname -m, userland_arch: dpkg's, page_size: bytes; each defaults to this machine's)."""
    live = None if config_path else read_live_state(root, machine, userland_arch, page_size)
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
               "mismatch": "MISMATCH", "unknown": "?", WARNING: "WARNING"}


def status_label(finding: Finding) -> str:
    label = STATUS_MARK[finding.status]
    return label if finding.required or finding.status in OK_STATUSES + ("unknown", WARNING) else label.lower()


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
    """hugetlb always says which release needs it, platform which packages to install; other rows only
    explain problems and modules."""
    return bool(finding.hint) and (finding.group in ("hugetlb", "platform") or finding.status not in OK_STATUSES)


def summary(report: Report) -> str:
    if report.error:
        return "cannot check: {}".format(report.error)
    blocking = [f.name for f in report.findings if f.blocking]
    version = report.crio_version or ">= " + HUGETLB_FIXED_IN
    if blocking:
        return "NOT READY: CRI-O {} needs {}".format(version, ", ".join(blocking))
    warned = [f.name for f in report.findings if f.status == WARNING]
    ready = "ready: this kernel has everything CRI-O {} needs".format(version)
    return ready + ("; but read the warnings: {}".format(", ".join(warned)) if warned else "")


def warnings(report: Report) -> List[str]:
    """The lines --quiet-warn prints: why the check could not run, then one per required gap (live ones
    too: a Pi without /proc/config.gz still hears that its memory cgroup is off), then one per warning
    (16K pages, a 32-bit userland)."""
    lines = []
    if report.error:
        lines.append("warning: could not check the kernel config for CRI-O: {} ({})".format(report.error.message, report.error.hint))
    lines += ["warning: CRI-O may not run on this kernel: {} is {} ({}){}".format(
        f.name, f.status, f.purpose, "; " + f.hint if f.hint else "") for f in report.findings if f.blocking]
    lines += ["warning: {} is {}: {}".format(f.name, f.detail, f.hint) for f in report.findings if f.status == WARNING]
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
