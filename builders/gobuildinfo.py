"""The build information a Go program carries (what `go version -m` prints), read from its bytes.

Go's linker writes a 32-byte header that starts "\\xff Go buildinf:", then the Go version and the module
list: inline since Go 1.18, before that as two pointers to Go strings in the data segment. The module
list is text: a `path` line, the main `mod`ule, one `dep` per module linked in (a `=>` line after one that
was replaced), then `build` settings. Go wraps it in two 16-byte sentinels. See debug/buildinfo in Go's
source for the reader this follows.
"""
from __future__ import annotations

from dataclasses import dataclass

from .elf import PT_LOAD, read_elf

MAGIC = b"\xff Go buildinf:"
FLAG_BIG_ENDIAN, FLAG_INLINE = 0x1, 0x2


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


def read_build_info(data: bytes) -> BuildInfo | None:
    """The build information of a Go ELF program, or None for anything else."""
    start = data.find(MAGIC)
    while start != -1:
        found = parse_header(data, start)
        if found is not None:
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
    order = "big" if flags & FLAG_BIG_ENDIAN else "little"
    version = go_string(data, int.from_bytes(header[16 : 16 + pointer_size], order), pointer_size, order)
    modules = go_string(data, int.from_bytes(header[16 + pointer_size : 16 + 2 * pointer_size], order), pointer_size, order)
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


def go_string(data: bytes, address: int, pointer_size: int, order: str) -> str | None:
    """The Go string whose header (pointer, length) is at the virtual address (Go before 1.18)."""
    header = file_offset(data, address)
    if header is None:
        return None
    pointer = int.from_bytes(data[header : header + pointer_size], order)  # type: ignore[arg-type]
    length = int.from_bytes(data[header + pointer_size : header + 2 * pointer_size], order)  # type: ignore[arg-type]
    text = file_offset(data, pointer)
    return data[text : text + length].decode(errors="replace") if text is not None else None


def file_offset(data: bytes, address: int) -> int | None:
    elf = read_elf(data)
    if elf is None:
        return None
    for kind, offset, vaddr, size in elf.segments():
        if kind == PT_LOAD and vaddr <= address < vaddr + size:
            return offset + address - vaddr
    return None


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
