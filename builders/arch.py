"""One architecture vocabulary, translated at the edges (Go, Debian, OCI, QEMU/uname, GNU, ELF)."""
from __future__ import annotations

import enum
import platform


class Arch(enum.StrEnum):
    arm64 = "arm64"
    armhf = "armhf"  # 32-bit ARMv7 hard-float: Raspberry Pi 2 and later (not the ARMv6 Pi 1 and Zero)
    amd64 = "amd64"

    def to_go(self) -> str:
        return GO[self]

    def go_env(self) -> dict[str, str]:
        """What tells Go to build for this architecture (GOARM=7: Debian's armhf baseline)."""
        return {"GOARCH": GO[self]} | ({"GOARM": "7"} if self is Arch.armhf else {})

    def go_tarball(self) -> str:
        """The architecture in go.dev's tarball names (go1.26.7.linux-armv6l.tar.gz: it runs on ARMv7 too)."""
        return {Arch.armhf: "armv6l"}.get(self, GO[self])

    def to_deb(self) -> str:
        return self.value

    def to_oci(self) -> str:
        return {Arch.armhf: "linux/arm/v7"}.get(self, f"linux/{self.value}")

    def to_uname(self) -> str:
        return UNAME[self]

    def qemu(self) -> str:
        """QEMU's user emulator and its binfmt_misc entry."""
        return {Arch.arm64: "qemu-aarch64", Arch.armhf: "qemu-arm", Arch.amd64: "qemu-x86_64"}[self]

    def to_gnu_triplet(self) -> str:
        return {Arch.arm64: "aarch64-linux-gnu", Arch.armhf: "arm-linux-gnueabihf", Arch.amd64: "x86_64-linux-gnu"}[self]

    @classmethod
    def from_uname(cls, machine: str) -> Arch:
        for arch in cls:
            if machine in (arch.value, UNAME[arch]):
                return arch
        if machine in ("armv7l", "armv8l"):
            return cls.armhf
        raise ValueError(f"unsupported machine {machine!r}")


GO = {Arch.arm64: "arm64", Arch.armhf: "arm", Arch.amd64: "amd64"}
UNAME = {Arch.arm64: "aarch64", Arch.armhf: "armv7l", Arch.amd64: "x86_64"}


def host_arch() -> Arch:
    return Arch.from_uname(platform.machine())
