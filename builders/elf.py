"""ELF files: what they are built for, what they link, and that a tree holds only the target's."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .arch import Arch
from .errors import ContainerError

ELF_MAGIC = b"\x7fELF"
E_MACHINE = {Arch.arm64: 183, Arch.armhf: 40, Arch.amd64: 62}  # EM_AARCH64, EM_ARM, EM_X86_64
EF_ARM_ABI_FLOAT_HARD, EF_ARM_EABI_VER5 = 0x400, 5
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_GNU_RELRO = 1, 2, 3, 0x6474E552
DT_NEEDED, DT_STRTAB = 1, 5


@dataclass(frozen=True)
class Elf:
    """The few fields of a little-endian ELF file (32- or 64-bit) this tool reads."""

    data: bytes
    bits: int  # 32 or 64
    machine: int
    e_type: int
    flags: int

    def word(self, at: int, size: int) -> int:
        return int.from_bytes(self.data[at : at + size], "little")

    @property
    def address_size(self) -> int:
        return self.bits // 8

    def segments(self) -> list[tuple[int, int, int, int]]:
        """(p_type, p_offset, p_vaddr, p_filesz) of each program header."""
        if self.bits == 64:
            phoff, phentsize, phnum = self.word(0x20, 8), self.word(0x36, 2), self.word(0x38, 2)
            fields = ((0, 4), (8, 8), (16, 8), (32, 8))
        else:
            phoff, phentsize, phnum = self.word(0x1C, 4), self.word(0x2A, 2), self.word(0x2C, 2)
            fields = ((0, 4), (4, 4), (8, 4), (16, 4))
        return [tuple(self.word(phoff + i * phentsize + at, size) for at, size in fields) for i in range(phnum)]  # type: ignore[misc]

    def needed(self) -> list[str]:
        """The DT_NEEDED sonames (empty for a static binary)."""
        segments = self.segments()
        dynamic = next(((off, size) for kind, off, _, size in segments if kind == PT_DYNAMIC), None)
        if dynamic is None:
            return []
        width = self.address_size
        entries = []
        for at in range(dynamic[0], dynamic[0] + dynamic[1], 2 * width):
            tag, value = self.word(at, width), self.word(at + width, width)
            if tag == 0:
                break
            entries.append((tag, value))
        strtab = next((v for t, v in entries if t == DT_STRTAB), None)
        base = next((off + strtab - vaddr for kind, off, vaddr, size in segments if kind == PT_LOAD and strtab is not None and vaddr <= strtab < vaddr + size), None)
        if base is None:
            return []
        return [self.data[base + v : self.data.index(b"\0", base + v)].decode() for t, v in entries if t == DT_NEEDED]


def needed_libraries(path: Path) -> list[str]:
    """The DT_NEEDED sonames of an ELF file (empty for a static one, or for anything else)."""
    with path.open("rb") as f:
        if f.read(4) != ELF_MAGIC:
            return []
    return sonames(path.read_bytes())


def sonames(data: bytes) -> list[str]:
    """needed_libraries of a file's content."""
    found = read_elf(data)
    return found.needed() if found else []


def read_elf(data: bytes) -> Elf | None:
    """The ELF file in data, or None if it is not a little-endian ELF."""
    if len(data) < 52 or data[:4] != ELF_MAGIC or data[5] != 1 or data[4] not in (1, 2):
        return None
    bits = 64 if data[4] == 2 else 32
    flags = int.from_bytes(data[0x30:0x34] if bits == 64 else data[0x24:0x28], "little")
    return Elf(data, bits, int.from_bytes(data[18:20], "little"), int.from_bytes(data[16:18], "little"), flags)


def elf_machine(path: Path) -> int | None:
    """The e_machine of an ELF file, or None if it is not one."""
    with path.open("rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != ELF_MAGIC:
        return None
    return int.from_bytes(header[18:20], "little")


def built_for(path: Path, arch: Arch) -> str | None:
    """Why the ELF file at path is not for arch (None if it is, or is no ELF at all)."""
    machine = elf_machine(path)
    if machine is None:
        return None
    if machine != E_MACHINE[arch]:
        return f"its ELF machine is {machine}, not {E_MACHINE[arch]}"
    if arch is Arch.armhf:
        found = read_elf(path.read_bytes())
        if found is None or found.bits != 32 or found.flags >> 24 != EF_ARM_EABI_VER5:
            return "it is not a 32-bit EABI5 ARM ELF"
        # A static Go program calls no C and says nothing of floats; anything linked against the target's
        # libraries must follow armhf's calling convention (floats in VFP registers).
        dynamic = any(kind == PT_INTERP for kind, *_ in found.segments())
        if dynamic and not found.flags & EF_ARM_ABI_FLOAT_HARD:
            return "it is not a 32-bit hard-float ARM ELF (armhf: EABI5, VFP registers)"
    return None


def check_tree(root: Path, arch: Arch) -> list[str]:
    """Every ELF under root must be for arch; returns their paths relative to root."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        if elf_machine(path) is None:
            continue
        wrong = built_for(path, arch)
        if wrong:
            raise ContainerError(
                f"{path.relative_to(root)} is not an {arch} ({arch.to_uname()}) binary because {wrong}",
                hint="the build used the wrong compiler, GOARCH or GOARM; check the component's build log",
            )
        found.append(str(path.relative_to(root)))
    if not found:
        raise ContainerError(f"no binaries were staged under {root}", hint="check the component's build log")
    return found
