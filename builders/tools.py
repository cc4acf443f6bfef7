"""The host's own tools (mmdebstrap, docker, git …): that they are installed, and their own words when they fail."""
from __future__ import annotations

import shutil
import sys
import threading
from collections import deque
from collections.abc import Iterable
from typing import IO

from .errors import BuildError

TAIL_LINES = 12

# What apt says in a container, and what to do about it.
APT_HINTS = (
    ("Temporary failure resolving", "the container cannot resolve the mirror's name: check Docker's DNS (`docker run --rm <image> getent hosts deb.debian.org`)"),
    ("Failed to fetch", "the container cannot download from the mirror: check the network from Docker containers, or set target.mirror in the recipe"),
    ("Unable to locate package", "the target's suite has no such package: check the recipe's target.packages and the component's build packages"),
    ("has no installation candidate", "the target's suite has no such package: check the recipe's target.packages and the component's build packages"),
    ("unmet dependencies", "the packages asked for conflict in this suite; apt's explanation is above"),
    ("No space left on device", "free disk space for Docker (`docker system df`, `docker system prune`)"),
)


def require_tool(tool: str, package: str, why: str) -> None:
    """Refuse to go on without tool, naming the Debian package that has it."""
    if shutil.which(tool) is None:
        raise BuildError(f"cannot {why} because {tool} is not installed", hint=f"sudo apt-get install {package}")


def last_lines(text: str, count: int = TAIL_LINES) -> str:
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-count:])


def hint_for(output: str, hints: Iterable[tuple[str, str]], default: str) -> str:
    """The hint whose marker appears last in output (the newest line is the nearest cause)."""
    found = [(output.rfind(marker), hint) for marker, hint in hints if marker in output]
    return max(found)[1] if found else default


class StderrTail:
    """Echo a child's stderr as it comes and keep its last lines, read on a thread (no pipe can fill up)."""

    def __init__(self, stream: IO[bytes], echo: IO[str] | None = None) -> None:
        self.lines: deque[str] = deque(maxlen=200)
        self.thread = threading.Thread(target=self._read, args=(stream, echo or sys.stderr), daemon=True)  # the step's log, while one runs
        self.thread.start()

    def _read(self, stream: IO[bytes], echo: IO[str]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace")
            self.lines.append(line)
            echo.write(line)
            echo.flush()

    def text(self) -> str:
        self.thread.join(timeout=10)
        return "".join(self.lines)
