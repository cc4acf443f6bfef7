"""The build information a Go program carries (what `go version -m` prints), read from its bytes.

Go's linker writes a 32-byte header that starts "\\xff Go buildinf:", then the Go version and the module
list: inline since Go 1.18, before that as two pointers to Go strings in the data segment. The module
list is text: a `path` line, the main `mod`ule, one `dep` per module linked in (a `=>` line after one that
was replaced), then `build` settings. Go wraps it in two 16-byte sentinels. See debug/buildinfo in Go's
source for the reader this follows.

Before Go 1.18 the pointers of a position-independent executable are relocated when it is loaded. Linked by
GNU ld for arm64 (cgo with -buildmode=pie: runc in the recipes of Go 1.14-1.17), the file does not hold them,
only the relocations' addends do; Go's own `go version -m` then reads garbage ("ad limit"). This reader
takes them from the relocations.

A Go program (one the Go linker made: its .go.buildinfo or .note.go.buildid section, or its Go build id note)
whose build information cannot be read is not "no information": read_build_info says None, and the SBOM
writer and `doit verify` refuse it (is_go_program tells them apart).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .elf import PT_LOAD, Elf, read_elf

MAGIC = b"\xff Go buildinf:"
FLAG_BIG_ENDIAN, FLAG_INLINE = 0x1, 0x2
GO_SECTIONS = (".go.buildinfo", ".note.go.buildid")
NT_GO_BUILDID = 4
GO_VERSION_RE = re.compile(r"^(go1(\.\d+)*|devel )")  # go1.15.15, go1.21rc2, go1.21.0 X:loopvar, devel go1.22-…: not garbage


@dataclass(frozen=True)
class Module:
    path: str
    version: str
    sum: str = ""


@dataclass(frozen=True)
class BuildInfo:
    go: str  # "go1.26.11"
    path: str  # the main package
    main: Module | None
    deps: tuple[Module, ...]  # each module linked in, as built (a replaced one as its replacement)


def is_go_program(data: bytes) -> bool:
    """Whether the Go linker made this ELF file (so it should carry build information)."""
    elf = read_elf(data)
    if elf is None:
        return False
    return any(name in GO_SECTIONS for name in elf.section_names()) or (b"Go", NT_GO_BUILDID) in elf.notes()


def read_build_info(data: bytes) -> BuildInfo | None:
    """The build information of a Go ELF program, or None for anything else and where it cannot be read."""
    start = data.find(MAGIC)
    while start != -1:
        found = parse_header(data, start)
        if found is not None and GO_VERSION_RE.match(found[0]):
            return parse_modules(*found)
        start = data.find(MAGIC, start + 1)
    return None


def parse_header(data: bytes, at: int) -> tuple[str, str] | None:
    header = data[at : at + 32]
    if len(header) < 32 or header[14] not in (4, 8):
        return None
    pointer_size, flags = header[14], header[15]
    if flags & FLAG_INLINE:
        version, rest = varint_string(data, at + 32)
        modules, _ = varint_string(data, rest)
        return version, modules
    elf = read_elf(data)
    if elf is None:
        return None
    pointers = Pointers(elf, pointer_size, "big" if flags & FLAG_BIG_ENDIAN else "little")
    header_address = elf_address(elf, at)
    if header_address is None:
        return None
    version = pointers.string(pointers.read(header_address + 16))
    modules = pointers.string(pointers.read(header_address + 16 + pointer_size))
    return (version, modules) if version is not None and modules is not None else None


def varint_string(data: bytes, at: int) -> tuple[str, int]:
    length, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    return data[at : at + length].decode(errors="replace"), at + length


def elf_address(elf: Elf, offset: int) -> int | None:
    """The loaded address of a file offset (the inverse of Elf.file_offset)."""
    return next((vaddr + offset - off for kind, off, vaddr, size in elf.segments() if kind == PT_LOAD and off <= offset < off + size), None)


class Pointers:
    """Pointer-sized words at loaded addresses of a Go program before 1.18, as the loader leaves them."""

    def __init__(self, elf: Elf, size: int, order: str) -> None:
        self.elf, self.size, self.order = elf, size, order
        self.relocated = elf.relative_relocations() if order == "little" else {}

    def read(self, address: int | None) -> int | None:
        if address is None:
            return None
        if address in self.relocated:
            return self.relocated[address]
        at = self.elf.file_offset(address)
        return int.from_bytes(self.elf.data[at : at + self.size], self.order) if at is not None else None  # type: ignore[arg-type]

    def string(self, address: int | None) -> str | None:
        """The Go string whose header (pointer, length) is at address."""
        pointer, length = self.read(address), self.read(None if address is None else address + self.size)
        at = self.elf.file_offset(pointer) if pointer is not None else None
        if at is None or length is None or length > len(self.elf.data) - at:
            return None
        return self.elf.data[at : at + length].decode(errors="replace")


def parse_modules(version: str, text: str) -> BuildInfo:
    if len(text) >= 33 and text[-17] == "\n":
        text = text[16:-16]  # the sentinels
    path, main, deps = "", None, []
    for line in text.splitlines():
        fields = line.split("\t")
        if fields[0] == "path" and len(fields) > 1:
            path = fields[1]
        elif fields[0] == "mod" and len(fields) > 2:
            main = Module(*fields[1:4])
        elif fields[0] == "dep" and len(fields) > 2:
            deps.append(Module(*fields[1:4]))
        elif fields[0] == "=>" and deps and len(fields) > 2:
            deps[-1] = Module(*fields[1:4])
    return BuildInfo(version, path, main, tuple(deps))
