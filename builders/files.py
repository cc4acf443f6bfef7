"""File utilities: sha256 of a file, files and directories written under a temporary name and put in place at
the end, and locks.

Nothing half-written is left where a user would mistake it for a result: every temporary name comes from
lifecycle.temp_prefix (`.<name>.<pid>-<start>-<random>.partial`), which names the process that made it. The
name's format, its parse-back and the sweep of dead owners' names stay together in lifecycle.py, because they
are about which process owns what; this module only makes, fills and renames the files.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .lifecycle import PARTIAL, remove, temp_prefix
from .view import say


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def temp_dir(parent: Path, name: str) -> Path:
    """A new directory beside where `name` will go, owned by this process (mode 0755 less the umask)."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=temp_prefix(name), suffix=PARTIAL, dir=parent))
    path.chmod(0o777 & ~umask())
    return path


def temp_file(parent: Path, name: str) -> tuple[int, Path]:
    """A new file (fd, path) beside where `name` will go, owned by this process (mode 0666 less the umask)."""
    parent.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=temp_prefix(name), suffix=PARTIAL, dir=parent)
    os.fchmod(fd, 0o666 & ~umask())
    return fd, Path(path)


@contextlib.contextmanager
def file_atomically(dest: Path, mode: str = "w") -> Iterator[tuple[IO[Any], Path]]:
    """(handle, temporary path) of a new file beside dest, put in dest's place when the block ends; if the block
    fails, dest stays what it was and the temporary file goes."""
    fd, tmp = temp_file(dest.parent, dest.name)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle, tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomically(path: Path, text: str) -> None:
    """path holds text, or what it held before: never a half-written file (mode 0644 under umask 022)."""
    with file_atomically(path) as (handle, _):
        handle.write(text)


def copy_atomically(source: Path, dest: Path) -> None:
    """dest becomes a copy of source, or stays what it was."""
    with file_atomically(dest, "wb") as (out, _), source.open("rb") as made:
        shutil.copyfileobj(made, out)


@contextlib.contextmanager
def temporary_dir(parent: Path, name: str) -> Iterator[Path]:
    """temp_dir, removed when the block ends (and by the next run if this one is killed)."""
    path = temp_dir(parent, name)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename tmp to dest, replacing whatever was there: dest is missing only between two renames, and the old
    one is deleted afterwards (or by the next run's sweep, under its temporary name, if this one is killed)."""
    trash = None
    if dest.exists() or dest.is_symlink():
        trash = dest.with_name(f"{temp_prefix(dest.name)}old{PARTIAL}")
        os.rename(dest, trash)
    os.rename(tmp, dest)
    if trash is not None:
        remove(trash)


@contextlib.contextmanager
def dir_atomically(dest: Path) -> Iterator[Path]:
    """A directory made in the block under a temporary name beside dest, then put in dest's place (an old dest
    goes); if the block fails, dest stays as it was and the half-made directory is removed."""
    partial = temp_dir(dest.parent, dest.name)
    try:
        yield partial
        swap_into_place(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


@contextlib.contextmanager
def locked(path: Path, waiting: str = "", *, shared: bool = False) -> Iterator[None]:
    """Hold the flock on path (created, never deleted: deleting lock files races), exclusive or shared; while
    another process holds it, say `waiting` once and wait. The kernel drops the lock when its process dies,
    even by SIGKILL. A new open file each time, so threads of one process exclude each other too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                say(waiting)
            fcntl.flock(handle, kind)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
