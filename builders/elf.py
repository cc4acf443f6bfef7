"""Check that every ELF file in a tree is built for the target architecture."""
from __future__ import annotations

from pathlib import Path

from .arch import Arch
from .errors import ContainerError

ELF_MAGIC = b"\x7fELF"
E_MACHINE = {Arch.arm64: 183, Arch.amd64: 62}  # EM_AARCH64, EM_X86_64


def elf_machine(path: Path) -> int | None:
    """The e_machine of a 64-bit little-endian ELF file, or None if it is not one."""
    with path.open("rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != ELF_MAGIC:
        return None
    return int.from_bytes(header[18:20], "little")


def check_tree(root: Path, arch: Arch) -> list[str]:
    """Every ELF under root must be for arch; returns their paths relative to root."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        machine = elf_machine(path)
        if machine is None:
            continue
        if machine != E_MACHINE[arch]:
            raise ContainerError(
                f"{path.relative_to(root)} is not an {arch.to_uname()} binary because its ELF machine is {machine}",
                hint="the build used the wrong compiler or GOARCH; check the component's build log",
            )
        found.append(str(path.relative_to(root)))
    if not found:
        raise ContainerError(f"no binaries were staged under {root}", hint="check the component's build log")
    return found
