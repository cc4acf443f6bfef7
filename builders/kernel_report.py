"""`doit check:kernel`: run builders/kernel_check.py and show its report with rich, or as JSON.

The check itself lives in kernel_check.py (stdlib only, shipped to the target as a script); this module
only picks the CRI-O version from the recipes, renders, and turns the verdict into doit's exit status:
None -> 0 (ready), TaskFailed -> 1 (something required is missing), TaskError -> 2 (could not check).
The reporter (view.BuildView) prints no line for this task and its errors to stderr, so `--json` leaves one JSON
document on stdout.
"""
from __future__ import annotations

import json
import sys

from doit.exceptions import TaskError, TaskFailed
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import kernel_check
from .kernel_check import Finding, Report
from .recipe import Recipe

STATUS_STYLE = {"enabled": "green", "module": "green", "missing": "red", "disabled": "red",
                "mismatch": "red", "unknown": "yellow", kernel_check.WARNING: "yellow"}


def check_kernel_task(config: str, crio_version: str, json_output: bool, recipes: list[Recipe]) -> TaskFailed | TaskError | None:
    """The action of `doit check:kernel [--config PATH] [--crio-version X.Y.Z|crio-1.18] [--json]`."""
    try:
        version = resolve_crio_version(crio_version, recipes)
    except ValueError as error:
        print(f"error: --crio-version {error}", file=sys.stderr)
        return TaskError(str(error), report=False)
    report = kernel_check.run_check(config or None, version)
    if json_output:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render(report, Console())
    return doit_result(report)


def resolve_crio_version(requested: str, recipes: list[Recipe]) -> str | None:
    """'' -> the newest recipe's cri-o version; a recipe name -> its version; else a version to validate."""
    by_name = {r.name: r.crio.version for r in recipes}
    if not requested:
        versions = sorted(by_name.values(), key=kernel_check.parse_version)
        return versions[-1] if versions else None
    if requested in by_name:
        return by_name[requested]
    kernel_check.parse_version(requested)  # raises ValueError with the reason
    return requested


def doit_result(report: Report) -> TaskFailed | TaskError | None:
    if report.exit_code == kernel_check.EXIT_UNCHECKED:
        print(f"error: {kernel_check.summary(report)}", file=sys.stderr)
        return TaskError(str(report.error), report=False)
    if report.exit_code == kernel_check.EXIT_MISSING:
        return TaskFailed(kernel_check.summary(report), report=False)
    return None


def render(report: Report, console: Console) -> None:
    version = report.crio_version or f">= {kernel_check.HUGETLB_FIXED_IN}"
    if report.findings:
        console.print(findings_table(report.findings, f"Kernel check for CRI-O {version}", report.config_source))
    if not report.error:
        warned = any(f.status == kernel_check.WARNING for f in report.findings)
        style = "bold red" if report.exit_code else "bold yellow" if warned else "bold green"
        console.print(Text(kernel_check.summary(report), style=style))


def findings_table(findings: list[Finding], title: str, source: str | None) -> Table:
    table = Table(title=title, caption=f"config: {source or '(none)'}")
    table.add_column("status", no_wrap=True)
    table.add_column("need", no_wrap=True)
    table.add_column("option: what it is for", overflow="fold", ratio=1)
    table.add_column("seen", overflow="fold", max_width=24)
    group = None
    for finding in findings:
        if finding.group != group:
            group = finding.group
            table.add_section()
        table.add_row(*finding_cells(finding))
    return table


def finding_cells(finding: Finding) -> tuple[Text, str, Text, str]:
    styled = finding.required or finding.status == kernel_check.WARNING  # a warning is worth colour even when optional
    status = Text(kernel_check.status_label(finding), style=STATUS_STYLE[finding.status] if styled else "")
    described = Text(finding.name, style="bold")
    described.append(f"\n{finding.purpose}")
    if kernel_check.shows_hint(finding):
        described.append(f"\n→ {finding.hint}", style="dim" if finding.status in kernel_check.OK_STATUSES else "yellow")
    return status, "required" if finding.required else "optional", described, finding.detail
