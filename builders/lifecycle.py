"""What one run of the tool owns, so a run that is interrupted or killed leaves nothing a later run cannot find.

- Every temporary file or directory is named `.<name>.<pid>-<start>-<random>.partial`: the process that
  made it, by pid and start time (a reused pid is another process). `sweep_files` removes those whose
  process is gone, wherever the cache and the artifacts keep them. The files under those names are made and
  put in place by builders/files.py.
- Containers carry the same owner in a label (builders/container.py sweeps them).
- SIGTERM and SIGHUP end a run as Ctrl-C does, so every `finally` runs; the run then ends with the
  signal's own exit status (130 for SIGINT, 143 for SIGTERM) and no traceback.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

PARTIAL = ".partial"
OWNED_RE = re.compile(r"\.(\d+)-(\d+)-[^.]*\.partial$")
OLD_PARTIAL_SECONDS = 3600  # a .partial without an owner (an older criobuild's) is a leftover after an hour
SWEEP_DEPTH = 3  # cache/work/<recipe>/.<component>.….partial is the deepest place a temporary name is made

RUNNING_STEP: str | None = None  # the step whose action runs in this process (set by actions.as_action)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


def owner_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}-{start_time(pid) or 0}"


def run_label() -> str:
    """`<host>:<pid>-<start>`: the run a container belongs to."""
    return f"{socket.gethostname()}:{owner_token()}"


def token_alive(pid: int, start: int) -> bool:
    return start_time(pid) == start if start else os.path.exists(f"/proc/{pid}")


def run_alive(label: str) -> bool | None:
    """Whether the run a label names still runs; None when it ran on another host (not ours to judge)."""
    host, _, token = label.rpartition(":")
    if host != socket.gethostname() or not re.fullmatch(r"\d+-\d+", token):
        return None
    pid, start = (int(n) for n in token.split("-"))
    return token_alive(pid, start)


# --------------------------------------------------------------------------- temporary names


def temp_prefix(name: str) -> str:
    return f".{name}.{owner_token()}-"


def leftover(path: Path) -> bool:
    """A temporary name whose process is gone (or an owner-less one over an hour old)."""
    m = OWNED_RE.search(path.name)
    if m:
        return not token_alive(int(m[1]), int(m[2]))
    try:
        return path.name.endswith(PARTIAL) and time.time() - path.lstat().st_mtime > OLD_PARTIAL_SECONDS
    except OSError:
        return False


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep_files(roots: list[Path]) -> list[Path]:
    """Remove the temporary files and directories of runs that are gone, under each root; returns them."""
    removed = []
    for root in roots:
        for path in temporary_names(root, SWEEP_DEPTH):
            if leftover(path):
                remove(path)
                removed.append(path)
    return removed


def temporary_names(directory: Path, depth: int) -> Iterator[Path]:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.name.endswith(PARTIAL):
            yield Path(entry.path)
        elif depth > 1 and entry.is_dir(follow_symlinks=False):
            yield from temporary_names(Path(entry.path), depth - 1)


# --------------------------------------------------------------------------- signals


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the run is, as Ctrl-C's KeyboardInterrupt is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP unwind the run like Ctrl-C; an interrupted run ends with the signal's status, no traceback."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, raise_interrupted)
    previous = sys.excepthook

    def end_quietly(kind: type[BaseException], error: BaseException, tb: object) -> None:
        if not issubclass(kind, KeyboardInterrupt):
            previous(kind, error, tb)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        signum = getattr(error, "signum", signal.SIGINT)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    sys.excepthook = end_quietly


# --------------------------------------------------------------------------- disk


def free_space(path: Path) -> tuple[Path, int]:
    """The nearest existing directory of path and the bytes free on its filesystem."""
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    return existing, shutil.disk_usage(existing).free


def no_space_error(paths: list[Path]):
    """The error for a full disk: the fullest of paths (where the write failed, if known), what is free there,
    and the settings that move the tool's files elsewhere."""
    from .errors import NoSpace

    where, free = min((free_space(p) for p in paths), key=lambda found: found[1])
    return NoSpace(
        f"no space left on {where} ({free / 2**20:.0f} MiB free)",
        hint="free space there, or point CRIOBUILD_CACHE (toolchains, clones, work trees) or CRIOBUILD_ARTIFACTS "
        "(packages, staging, logs) at a filesystem with room; what was half-written has been removed",
    )
