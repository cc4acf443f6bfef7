"""pod-report.json: what `doit pod` saw, a report of its own beside the artifacts it tested.

The pod test runs after the build has written (and perhaps signed) SHA256SUMS, manifest.json and the
provenance; it changes none of them. Its report names each .deb it installed with its sha256, so anyone
can tell which packages it speaks for; with CRIOBUILD_GPG_KEY set it is signed (pod-report.json.asc),
without it any older signature goes. A pod test removes the report of an earlier one when it starts, so
one that fails leaves none. A rebuild that changes an artifact the report names drops the
report (and its signature) when it writes the new sums: a report never speaks for packages it did not test.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .files import sha256_file, write_atomically

REPORT = "pod-report.json"


def report_path(directory: Path) -> Path:
    return directory / REPORT


def signature_path(directory: Path) -> Path:
    return directory / f"{REPORT}.asc"


def write_report(directory: Path, report: dict[str, Any], tested: list[Path]) -> Path:
    """The report with the sha256 of each artifact it tested, atomically; an older report's signature goes
    (builders/attest.py signs the new one)."""

    text = json.dumps({**report, "tested": {p.name: sha256_file(p) for p in sorted(tested)}}, indent=2) + "\n"
    signature_path(directory).unlink(missing_ok=True)
    write_atomically(report_path(directory), text)
    return report_path(directory)


def stale_because(directory: Path) -> str | None:
    """Why the report no longer speaks for the artifacts beside it, or None (it does, or there is none)."""
    path = report_path(directory)
    if not path.is_file():
        return None
    try:
        names = dict(json.loads(path.read_text())["tested"])
    except (ValueError, KeyError, TypeError):
        return "it names no tested artifacts with their sha256 (an older criobuild wrote it)"
    for name, digest in sorted(names.items()):
        artifact = directory / name
        if not artifact.is_file():
            return f"it tested {name}, which is no longer there"
        if sha256_file(artifact) != digest:
            return f"it tested {name} with sha256 {digest[:12]}…, which is now {sha256_file(artifact)[:12]}…"
    return None


def drop_if_stale(directory: Path) -> str | None:
    """Remove a report (and its signature) that no longer matches the artifacts; the reason, if it did."""
    why = stale_because(directory)
    if why:
        remove_report(directory)
    return why


def remove_report(directory: Path) -> None:
    report_path(directory).unlink(missing_ok=True)
    signature_path(directory).unlink(missing_ok=True)
