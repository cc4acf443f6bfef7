"""The distributions a Pi runs, one module per family (mkosi's distributions/ is the model).

A target is a release of a distribution and an architecture; what the tool knows of each release
(its mirror, its version suffix, where its debhelper wants systemd units) lives in its family's module.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..arch import Arch
from . import debian, ubuntu

FAMILIES = {"debian": debian, "ubuntu": ubuntu}


@dataclass(frozen=True)
class Release:
    distro: str
    suite: str
    version: str  # "13", "24.04"
    tag: str  # the package version's suffix after "~": deb13, ubuntu24.04 (so upgrades across releases order right)
    units_in_usr: bool  # its debhelper installs units from /usr/lib/systemd/system (else /lib/systemd/system)
    mirror: str


def release(distro: str, suite: str) -> Release:
    family = FAMILIES[distro]
    version, units_in_usr = family.RELEASES[suite]
    return Release(distro, suite, version, family.version_tag(version), units_in_usr, family.MIRROR)


def suites(distro: str) -> list[str]:
    return list(FAMILIES[distro].RELEASES)


# Every target a recipe builds for; the first is the default: today's Raspberry Pi OS (Debian 13, 64-bit).
TARGETS: list[tuple[str, str, Arch]] = [
    ("debian", "trixie", Arch.arm64),
    ("debian", "trixie", Arch.armhf),
    ("debian", "bookworm", Arch.arm64),
    ("debian", "bookworm", Arch.armhf),
    ("debian", "bullseye", Arch.arm64),
    ("debian", "bullseye", Arch.armhf),
    ("ubuntu", "noble", Arch.arm64),
    ("ubuntu", "noble", Arch.armhf),
    ("ubuntu", "jammy", Arch.arm64),
    ("ubuntu", "jammy", Arch.armhf),
    # Not a Pi: the same packages for x86_64, built natively there. The pod test runs on them
    # (QEMU user emulation cannot create namespaces), as a stand-in for trixie arm64 on x86_64 hosts.
    ("debian", "trixie", Arch.amd64),
]
