"""ELF files: what they are built for, what they link, and that a tree holds only the target's."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .arch import Arch
from .errors import ContainerError

ELF_MAGIC = b"\x7fELF"
E_MACHINE = {Arch.arm64: 183, Arch.armhf: 40, Arch.amd64: 62}  # EM_AARCH64, EM_ARM, EM_X86_64
EF_ARM_ABI_FLOAT_HARD, EF_ARM_EABI_VER5 = 0x400, 5
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE, PT_GNU_RELRO = 1, 2, 3, 4, 0x6474E552
DT_NEEDED, DT_STRTAB, DT_RELA, DT_RELASZ, DT_RELAENT = 1, 5, 7, 8, 9
# The relocation that stores base address + addend (a pointer of a position-independent executable):
# R_X86_64_RELATIVE, R_AARCH64_RELATIVE, R_ARM_RELATIVE.
RELATIVE = {62: 8, 183: 1027, 40: 23}


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

    def dynamic(self) -> list[tuple[int, int]]:
        """The (d_tag, d_val) entries of the dynamic section (empty for a static binary)."""
        found = next(((off, size) for kind, off, _, size in self.segments() if kind == PT_DYNAMIC), None)
        if found is None:
            return []
        width = self.address_size
        entries = []
        for at in range(found[0], found[0] + found[1], 2 * width):
            tag, value = self.word(at, width), self.word(at + width, width)
            if tag == 0:
                break
            entries.append((tag, value))
        return entries

    def file_offset(self, address: int) -> int | None:
        """Where in the file the loaded address is (None: in no loaded segment's file bytes)."""
        return next((off + address - vaddr for kind, off, vaddr, size in self.segments() if kind == PT_LOAD and vaddr <= address < vaddr + size), None)

    def needed(self) -> list[str]:
        """The DT_NEEDED sonames (empty for a static binary)."""
        entries = self.dynamic()
        strtab = next((v for t, v in entries if t == DT_STRTAB), None)
        base = self.file_offset(strtab) if strtab is not None else None
        if base is None:
            return []
        return [self.data[base + v : self.data.index(b"\0", base + v)].decode() for t, v in entries if t == DT_NEEDED]

    def relative_relocations(self) -> dict[int, int]:
        """address -> the value the loader stores there, of a position-independent executable's RELA relocations.

        With RELA (arm64, x86_64) the value is the relocation's addend, and what the file holds at the address
        need not be it: GNU ld leaves other bytes there on arm64. (With REL, armhf's, the file holds it.)"""
        entries = dict(self.dynamic())
        start, size = self.file_offset(entries.get(DT_RELA, -1)), entries.get(DT_RELASZ, 0)
        width = self.address_size
        entry = entries.get(DT_RELAENT, 3 * width)
        if start is None or self.machine not in RELATIVE:
            return {}
        found = {}
        for at in range(start, start + size, entry):
            info = self.word(at + width, width)
            if (info & 0xFFFFFFFF if width == 8 else info & 0xFF) == RELATIVE[self.machine]:
                found[self.word(at, width)] = self.word(at + 2 * width, width)
        return found

    def section_names(self) -> list[str]:
        """The names of its sections (empty when the section headers are stripped)."""
        if self.bits == 64:  # e_shoff, e_shentsize, e_shnum, e_shstrndx; and where sh_offset is in a section header
            shoff, shentsize, shnum, shstrndx = self.word(0x28, 8), self.word(0x3A, 2), self.word(0x3C, 2), self.word(0x3E, 2)
            offset_at = 0x18
        else:
            shoff, shentsize, shnum, shstrndx = self.word(0x20, 4), self.word(0x2E, 2), self.word(0x30, 2), self.word(0x32, 2)
            offset_at = 0x10
        if not shoff or shstrndx >= shnum or shoff + shnum * shentsize > len(self.data):
            return []
        strings = self.word(shoff + shstrndx * shentsize + offset_at, self.address_size)
        names = []
        for i in range(shnum):
            start = strings + self.word(shoff + i * shentsize, 4)  # sh_name
            end = self.data.find(b"\0", start)
            names.append(self.data[start:end].decode(errors="replace") if 0 <= start < end else "")
        return names

    def notes(self) -> list[tuple[bytes, int]]:
        """(name, type) of each note in its PT_NOTE segments."""
        found = []
        for kind, off, _, size in self.segments():
            at = off
            while kind == PT_NOTE and at + 12 <= off + size:
                namesz, descsz, note_type = self.word(at, 4), self.word(at + 4, 4), self.word(at + 8, 4)
                found.append((self.data[at + 12 : at + 12 + namesz].rstrip(b"\0"), note_type))
                at += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
        return found


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
