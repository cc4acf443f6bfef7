"""User-facing errors: '<what failed> because <why>' plus a hint, never a traceback."""
from __future__ import annotations


class BuildError(Exception):
    """An error the user can fix; shown without a traceback."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class RecipeError(BuildError):
    """A recipe file is malformed."""


class ChecksumError(BuildError):
    """A download does not match its pinned sha256."""


class DownloadError(BuildError):
    """A download could not be completed."""


class SourceError(BuildError):
    """A component's source could not be fetched or pinned."""


class ContainerError(BuildError):
    """Docker, QEMU or a command inside a build container failed."""


class PackageError(BuildError):
    """A .deb or tarball could not be produced."""


# No KernelConfigError here: kernel_check.py ships to the target as a standalone script (standard library only),
# so it cannot import this module; its own kernel_check.KernelConfigError is the one.


class NoSpace(BuildError):
    """A disk filled up under the build."""


NO_SPACE_WORDS = ("No space left on device", "Disk quota exceeded")


def no_space(error: BaseException) -> bool:
    """Whether an OSError (or a tool's words) says a disk or quota is full."""
    import errno

    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(words in str(error) for words in NO_SPACE_WORDS)
