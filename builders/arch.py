"""One architecture vocabulary, translated at the edges (Go, Debian, OCI, QEMU/uname)."""
from __future__ import annotations

import enum
import platform


class Arch(enum.StrEnum):
    arm64 = "arm64"
    amd64 = "amd64"

    def to_go(self) -> str:
        return self.value

    def to_deb(self) -> str:
        return self.value

    def to_oci(self) -> str:
        return f"linux/{self.value}"

    def to_uname(self) -> str:
        return {Arch.arm64: "aarch64", Arch.amd64: "x86_64"}[self]

    def to_gnu_triplet(self) -> str:
        return f"{self.to_uname()}-linux-gnu"

    def elf_machine(self) -> str:
        """What `file` prints for an ELF of this architecture."""
        return {Arch.arm64: "ARM aarch64", Arch.amd64: "x86-64"}[self]

    @classmethod
    def from_uname(cls, machine: str) -> Arch:
        for arch in cls:
            if machine in (arch.value, arch.to_uname()):
                return arch
        raise ValueError(f"unsupported machine {machine!r}")


def host_arch() -> Arch:
    return Arch.from_uname(platform.machine())
