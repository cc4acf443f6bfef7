"""Targets: the releases and architectures a Pi runs, named, versioned and checked the way each wants."""
from __future__ import annotations

import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from builders import deb, elf
from builders.arch import Arch
from builders.modes import cross_packages, resolve_mode
from builders.recipe import Target, for_every_target, load_recipe
from builders.targets import TARGETS, release

REPO = Path(__file__).resolve().parents[2]
RECIPE = load_recipe(REPO / "recipes" / "crio-1.36.toml")


def test_the_default_target_is_todays_raspberry_pi_os_and_every_other_is_one_name_away() -> None:
    assert (RECIPE.target.distro, RECIPE.target.suite, RECIPE.target.arch) == ("debian", "trixie", Arch.arm64)
    names = [r.name for r in for_every_target(RECIPE)]
    assert names[0] == "crio-1.36" and len(names) == len(TARGETS) == 11
    assert {"crio-1.36@trixie-armhf", "crio-1.36@bookworm-arm64", "crio-1.36@bullseye-armhf", "crio-1.36@noble-arm64", "crio-1.36@jammy-armhf"} <= set(names)
    assert "crio-1.36@trixie-amd64" in names  # the native stand-in the pod test runs on
    assert len({r.target for r in for_every_target(RECIPE)}) == 11  # each its own target, so its own artifacts/<name>/


@pytest.mark.parametrize("arch, go, tarball, deb_arch, oci, qemu, triplet", [
    (Arch.arm64, {"GOARCH": "arm64"}, "arm64", "arm64", "linux/arm64", "qemu-aarch64", "aarch64-linux-gnu"),
    (Arch.armhf, {"GOARCH": "arm", "GOARM": "7"}, "armv6l", "armhf", "linux/arm/v7", "qemu-arm", "arm-linux-gnueabihf"),
    (Arch.amd64, {"GOARCH": "amd64"}, "amd64", "amd64", "linux/amd64", "qemu-x86_64", "x86_64-linux-gnu"),
])  # fmt: skip
def test_one_architecture_vocabulary_translated_at_the_edges(arch, go, tarball, deb_arch, oci, qemu, triplet) -> None:
    assert (arch.go_env(), arch.go_tarball(), arch.to_deb(), arch.to_oci(), arch.qemu(), arch.to_gnu_triplet()) == (go, tarball, deb_arch, oci, qemu, triplet)
    assert Arch.from_uname(arch.to_uname()) is arch


def test_armhf_builds_for_armv7_in_every_mode() -> None:
    for mode in ("cross", "qemu"):
        assert resolve_mode(mode, Arch.armhf).env()["GOARM"] == "7"  # Pi 2 and later; not the ARMv6 Pi 1 or Zero
    assert resolve_mode("cross", Arch.armhf).env()["CC"] == "arm-linux-gnueabihf-gcc"
    packages = cross_packages(("libseccomp-dev", "make"), Arch.armhf)
    assert {"gcc-arm-linux-gnueabihf", "binutils-arm-linux-gnueabihf", "libseccomp-dev:armhf", "make"} <= set(packages)


@pytest.mark.parametrize("distro, suite, tag, units_in_usr", [
    ("debian", "bullseye", "deb11", False), ("debian", "bookworm", "deb12", False), ("debian", "trixie", "deb13", True),
    ("ubuntu", "jammy", "ubuntu22.04", False), ("ubuntu", "noble", "ubuntu24.04", True),
])  # fmt: skip
def test_each_release_has_its_version_tag_and_unit_directory(distro, suite, tag, units_in_usr) -> None:
    r = release(distro, suite)
    assert (r.tag, r.units_in_usr) == (tag, units_in_usr)
    target = Target(distro=distro, suite=suite, arch=Arch.armhf, mirror=r.mirror)
    assert deb.deb_version(replace(RECIPE, target=target), "cri-o") == f"1.36.3-1~{tag}"


def test_upgrades_across_releases_order_right() -> None:
    versions = [deb.deb_version(replace(RECIPE, target=t.target), "cri-o") for t in for_every_target(RECIPE) if t.target.arch is Arch.arm64]
    ordered = sorted(versions, key=lambda v: v.split("~")[-1])
    for older, newer in zip(ordered, ordered[1:]):
        if older.split("~")[-1][:3] == newer.split("~")[-1][:3]:  # within one family
            assert subprocess.run(["dpkg", "--compare-versions", older, "lt", newer]).returncode == 0, (older, newer)


def test_units_stay_in_usr_where_debhelper_reads_them(tmp_path: Path) -> None:
    for units_in_usr, where in ((True, "usr/lib/systemd/system"), (False, "lib/systemd/system")):
        root = tmp_path / str(units_in_usr)
        (root / "usr/lib/systemd/system").mkdir(parents=True)
        (root / "usr/lib/systemd/system/crio.service").write_text("[Service]\n")
        deb.move_units(root, units_in_usr)
        assert (root / where / "crio.service").is_file()


def elf32_arm(flags: int, needed: tuple[str, ...] = (), interpreter: bool = True) -> bytes:
    """A 32-bit little-endian ARM ELF with a PT_LOAD, a PT_DYNAMIC of DT_NEEDED entries and their strings
    (and a PT_INTERP, as a dynamically linked program has)."""
    strings = b"\0" + b"".join(n.encode() + b"\0" for n in needed)
    offsets, at = [], 1
    for n in needed:
        offsets.append(at)
        at += len(n) + 1
    header_size, ph_size, phnum = 52, 32, 3 if interpreter else 2
    strtab_off = header_size + phnum * ph_size
    dyn_off = strtab_off + len(strings)
    dynamic = b"".join(struct.pack("<II", 1, o) for o in offsets) + struct.pack("<II", 5, strtab_off) + struct.pack("<II", 0, 0)
    total = dyn_off + len(dynamic)
    header = b"\x7fELF" + bytes([1, 1, 1]) + b"\0" * 9 + struct.pack("<HHIIIIIHHHHHH", 3, 40, 1, 0, header_size, 0, flags, header_size, ph_size, phnum, 0, 0, 0)
    load = struct.pack("<IIIIIIII", 1, 0, 0, 0, total, total, 5, 0x1000)
    dyn = struct.pack("<IIIIIIII", 2, dyn_off, dyn_off, 0, len(dynamic), len(dynamic), 6, 4)
    interp = struct.pack("<IIIIIIII", 3, 0, 0, 0, 0, 0, 4, 1) if interpreter else b""
    return header + load + dyn + interp + strings + dynamic


def test_armhf_binaries_must_be_32_bit_hard_float(tmp_path: Path) -> None:
    hard, soft, static_go, old_abi = (tmp_path / n for n in ("hard", "soft", "go", "old"))
    hard.write_bytes(elf32_arm(0x05000400))  # EABI5, hard-float
    soft.write_bytes(elf32_arm(0x05000200))  # EABI5, soft-float (armel)
    static_go.write_bytes(elf32_arm(0x05000002, interpreter=False))  # what Go's linker writes without cgo
    old_abi.write_bytes(elf32_arm(0x04000400))
    assert elf.built_for(hard, Arch.armhf) is None and elf.built_for(static_go, Arch.armhf) is None
    assert "not a 32-bit hard-float ARM ELF" in (elf.built_for(soft, Arch.armhf) or "")
    assert "not a 32-bit EABI5 ARM ELF" in (elf.built_for(old_abi, Arch.armhf) or "")
    assert "ELF machine is 40, not 183" in (elf.built_for(hard, Arch.arm64) or "")


def test_32_bit_elf_files_name_their_libraries_too() -> None:
    found = elf.read_elf(elf32_arm(0x05000400, ("libseccomp.so.2", "libc.so.6")))
    assert found is not None and found.bits == 32
    assert found.needed() == ["libseccomp.so.2", "libc.so.6"]
