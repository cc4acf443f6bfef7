"""What a person sees while doit runs the pipeline.

Each step (a doit task whose meta names a log) writes everything it prints to its own log file
(artifacts/<recipe>/logs/<step>.log). The reporter shows the steps: on a terminal one live rich view (state,
elapsed time, the running step's last lines, a download's bytes and speed); elsewhere (CI, a pipe, a file)
plain timestamped lines, one when a step starts and one when it ends. A failure ends the output with the
step's last 30 lines, its log's path and the hint; a run ends with a table of what the recipe produced.
CRIOBUILD_VERBOSE=1 streams every step's output as well, with the plain lines.
"""
from __future__ import annotations

import atexit
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from doit.exceptions import UnmetDependency
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

FAILURE_LINES = 30
RUNNING_LINES = 4
FINISHED = ("done", "reused", "up to date")
LOADED = time.monotonic()  # dodo.py imports this first: the total includes reading the recipes


def verbose() -> bool:
    return os.environ.get("CRIOBUILD_VERBOSE", "") not in ("", "0")


# --------------------------------------------------------------------------- the step side (runs the action)


class Tee(io.TextIOBase):
    """sys.stdout or sys.stderr while a step runs: its log file, and the terminal too when verbose."""

    def __init__(self, log: IO[str], echo: IO[str] | None) -> None:
        self.log = log
        self.echo = echo

    def write(self, text: str) -> int:
        try:
            self.log.write(text)
            self.log.flush()
        except OSError:  # a full disk under the log must not hide the step's own failure
            pass
        if self.echo:
            self.echo.write(text)
            self.echo.flush()
        return len(text)

    def isatty(self) -> bool:
        return False


@contextmanager
def step_output(log: Path | None) -> Iterator[None]:
    """Send what the step prints to log (the reporter adds how it failed); without a log nothing changes."""
    if log is None:
        yield
        return
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        file = log.open("w", encoding="utf-8", errors="replace")
    except OSError:  # no log (a full disk): the step prints where it would without one
        yield
        return
    saved = sys.stdout, sys.stderr
    echo = verbose()
    sys.stdout, sys.stderr = Tee(file, saved[0] if echo else None), Tee(file, saved[1] if echo else None)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        try:
            file.close()
        except OSError:
            pass


@dataclass
class Transfer:
    name: str
    total: int | None
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def speed(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-3)

    def describe(self) -> str:
        return f"{self.name}: {megabytes(self.done)} of {megabytes(self.total)}, {megabytes(self.speed())}/s"


TRANSFERS: list[Transfer] = []  # downloads under way in this process, drawn by the live view


@contextmanager
def transfer(name: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Count a download's bytes: the live view draws them; the log gets a line at each quarter."""
    current = Transfer(name, total)
    quarters = iter((0.25, 0.5, 0.75, 2.0))
    next_quarter = next(quarters)
    print(f"downloading {name} ({megabytes(total)})", file=sys.stderr, flush=True)

    def advance(n: int) -> None:
        nonlocal next_quarter
        current.done += n
        while total and current.done / total >= next_quarter:
            print(f"  {current.describe()}", file=sys.stderr, flush=True)
            next_quarter = next(quarters)

    TRANSFERS.append(current)
    try:
        yield advance
    finally:
        TRANSFERS.remove(current)
    say(f"downloaded {name}: {megabytes(current.done)} in {seconds(time.monotonic() - current.started)}, {megabytes(current.speed())}/s")


def megabytes(n: float | None) -> str:
    return "size unknown" if n is None else f"{n / 1e6:.1f} MB"


LISTENER: BuildView | None = None  # the reporter of this process, which shows notes


def say(text: str) -> None:
    """A line the person running the build should read (a fallback taken, a download done), not only the log."""
    if LISTENER is None or isinstance(sys.stderr, Tee):  # the view shows it: print it only to a step's log
        print(text, file=sys.stderr, flush=True)
    if LISTENER is not None:
        LISTENER.note(text)


# --------------------------------------------------------------------------- the reporter side


@dataclass
class StepState:
    name: str
    log: Path
    meta: dict[str, Any]
    state: str = "waiting"  # running, done, reused, up to date, failed, not run
    started: float = 0.0
    ended: float = 0.0

    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started if self.started else 0.0


def steps_of(tasks: dict[str, Any], selected: list[str]) -> list[StepState]:
    """The logged steps the selected tasks need, in the order doit runs them (dependencies first)."""
    producers = {target: task.name for task in tasks.values() for target in task.targets}
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name not in tasks:
            return
        task = tasks[name]
        for dep in [*task.task_dep, *task.setup_tasks, *(producers[f] for f in sorted(task.file_dep) if f in producers)]:
            visit(dep)
        order.append(name)

    for name in selected:
        visit(name)
    return [StepState(n, Path(tasks[n].meta["log"]), tasks[n].meta) for n in order if (tasks[n].meta or {}).get("log")]


class BuildView:
    """doit's reporter (DOIT_CONFIG "reporter"). Tasks without a log (check:kernel, repo, pin) print as they
    always did: standard output stays theirs (`doit check:kernel --json | jq`)."""

    desc = "criobuild: a live view on a terminal, timestamped step lines elsewhere"

    def __init__(self, outstream: IO[str], options: dict[str, Any]) -> None:
        self.out = outstream
        self.err = sys.stderr
        self.console = Console(file=outstream, highlight=False)
        self.streaming = verbose() or (options.get("num_process") or 0) > 1  # doit -n: steps print as they run
        self.live_mode = self.console.is_terminal and not self.streaming
        self.steps: dict[str, StepState] = {}
        self.failures: list[tuple[str, Any, StepState | None]] = []
        self.errors: list[str] = []
        self.started = LOADED
        self.live: Live | None = None

    # doit's reporter interface

    def initialize(self, tasks: dict[str, Any], selected_tasks: list[str]) -> None:
        global LISTENER
        self.steps = {s.name: s for s in steps_of(tasks, selected_tasks)}
        if not self.steps:
            return
        LISTENER = self
        if self.live_mode:
            self.live = Live(console=self.console, get_renderable=self.render, refresh_per_second=4, redirect_stdout=True, redirect_stderr=True)
            self.live.start()
            atexit.register(self.live.stop)
        else:
            self.line("criobuild", f"{count(len(self.steps), 'step')}; logs in {', '.join(self.log_dirs())}")

    def get_status(self, task: Any) -> None:
        pass

    def execute_task(self, task: Any) -> None:
        step = self.steps.get(task.name)
        if step:
            step.state, step.started = "running", time.monotonic()
            self.line("start", step.name)

    def add_success(self, task: Any) -> None:
        step = self.steps.get(task.name)
        if step:
            self.finish(step, "reused" if task.values.get("reused") else "done")  # a build another recipe made (builders/store.py)

    def skip_uptodate(self, task: Any) -> None:
        step = self.steps.get(task.name)
        if step:
            self.finish(step, "up to date")

    def skip_ignore(self, task: Any) -> None:  # `doit ignore` was asked for it
        step = self.steps.get(task.name)
        if step:
            self.finish(step, "not run")

    def add_failure(self, task: Any, fail: Any) -> None:
        step = self.steps.get(task.name)
        if step and isinstance(fail, UnmetDependency):
            self.finish(step, "not run")  # a step it needs failed, and says so
            return
        if step:
            self.finish(step, "failed")
        if fail.report:
            self.failures.append((task.name, fail, step))

    def runtime_error(self, msg: str) -> None:
        self.errors.append(msg)

    def cleanup_error(self, exception: Any) -> None:
        self.errors.append(exception.get_msg())

    def teardown_task(self, task: Any) -> None:
        pass

    def complete_run(self) -> None:
        global LISTENER
        LISTENER = None
        if self.live:
            self.live.stop()
        interrupted = [s for s in self.steps.values() if s.state == "running"]
        for step in interrupted:  # only an interrupt ends a run while a step runs
            self.finish(step, "interrupted")
        if self.steps and not self.failures and not interrupted:
            self.summary()
        for name, fail, step in self.failures:
            self.failure(name, fail, step)
        for step in interrupted:
            self.err.write(f"\n✗ interrupted during {step.name} after {seconds(step.elapsed())}: its containers and half-made files are removed; "
                           f"the steps that finished stay done, and the next run goes on from there (log: {shown(step.log)})\n")
        for msg in self.errors:
            self.err.write(f"error: {msg}\n")
        self.err.flush()

    # plain lines and notes

    def line(self, state: str, text: str) -> None:
        if not self.live_mode:
            self.out.write(f"{time.strftime('%H:%M:%S')} {state:<10} {text}\n")
            self.out.flush()

    def note(self, text: str) -> None:
        if self.live:
            self.live.console.print(Text(text, style="cyan"))
        elif not self.streaming:  # streaming has printed it already
            self.line("note", text)

    def finish(self, step: StepState, state: str) -> None:
        step.state, step.ended = state, time.monotonic()
        took = f" ({seconds(step.elapsed())})" if step.started else ""
        self.line(state, f"{step.name}{took}")

    def log_dirs(self) -> list[str]:
        return sorted({shown(s.log.parent) + "/" for s in self.steps.values()})

    # the live view

    def render(self) -> Group:
        table = Table(box=None, show_header=False, padding=(0, 1), expand=False)
        table.add_column(width=2, no_wrap=True)
        table.add_column(justify="right", no_wrap=True, min_width=10)
        table.add_column(no_wrap=True, overflow="ellipsis")  # last: the running step's long lines push nothing
        hidden = self.folded()
        if hidden:
            table.add_row(Text("✓", "green"), "", Text(f"{hidden} steps done or up to date", "dim"))
        for step in [s for s in self.steps.values() if s.state not in FINISHED] if hidden else self.steps.values():
            table.add_row(mark(step.state), seconds(step.elapsed()) if step.started else "", Text(step.name, "bold" if step.state == "running" else ""))
            if step.state == "running":
                for extra in self.running_details(step):
                    table.add_row("", "", extra)
        title = Text(f"criobuild · {seconds(time.monotonic() - self.started)} · logs in {', '.join(self.log_dirs())}", "dim")
        return Group(title, table)

    def folded(self) -> int:
        """How many finished steps fold into one line, so the running ones stay on screen."""
        room = self.console.height - RUNNING_LINES - 6
        finished = [s for s in self.steps.values() if s.state in FINISHED]
        return len(finished) if len(self.steps) > room else 0

    def running_details(self, step: StepState) -> list[Any]:
        details: list[Any] = []
        for t in list(TRANSFERS):
            details.append(Group(ProgressBar(total=t.total or None, completed=t.done, width=40), Text(t.describe(), "dim")))
        room = max(self.console.width - 16, 20)  # the log's lines are cut to the screen, so no column is squeezed
        details += [Text(line[: room - 1] + "…" if len(line) > room else line, "dim") for line in last_lines(step.log, RUNNING_LINES)]
        return details

    # the end

    def summary(self) -> None:
        """What the run produced (a table per recipe whose sums step was in it) and how long it took."""
        console = Console(file=self.out, width=None if self.live_mode else 200, highlight=False)
        for step in self.steps.values():
            if step.meta.get("sums") and step.state in FINISHED:
                console.print(produced_table(Path(step.meta["sums"]), step.meta.get("target", ""), box.SIMPLE if self.live_mode else None))
        ran = sum(s.state == "done" for s in self.steps.values())
        current = sum(s.state == "up to date" for s in self.steps.values())
        reused = sum(s.state == "reused" for s in self.steps.values())
        total = f"{seconds(time.monotonic() - self.started)}: {count(ran, 'step')} run, {current} up to date" + (f", {reused} reused" if reused else "")
        if self.live_mode:
            self.console.print(f"total {total}")
        else:
            self.line("total", total)

    def failure(self, name: str, fail: Any, step: StepState | None) -> None:
        """The failed step, its log's last lines, the log's path and the error with its hint; nothing after it."""
        message = fail.get_msg().rstrip()
        write = self.err.write
        if step is None:
            write(f"{name} failed:\n{message}\n")
            return
        write(f"\n✗ {name} failed after {seconds(step.elapsed())}\n")
        tail = [] if self.streaming else last_lines(step.log, FAILURE_LINES)
        try:
            with step.log.open("a") as log:  # the log ends with why the step failed, traceback and hint included
                log.write(f"error: {message}\n")
        except OSError:
            pass
        if tail:
            write(f"--- the last {len(tail)} lines of {shown(step.log)}:\n")
            write("".join(f"  {line}\n" for line in tail))
            write("---\n")
        write(f"{not_repeated(message, tail)}\n")
        write(f"full log: {shown(step.log)}\n")


def not_repeated(message: str, tail: list[str]) -> str:
    """The error without the output lines it quotes that the tail shows just above it."""
    shown_lines = {line.strip() for line in tail if line.strip()}
    return "\n".join(line for line in message.splitlines() if line.strip() not in shown_lines or line.lstrip().startswith("hint:"))


def produced_table(sums: Path, target: str, style: Any) -> Table:
    """file, size, sha256 (its first 12 digits) and target of each artifact SHA256SUMS lists, under its directory."""
    table = Table(title=f"{shown(sums.parent)}/", title_justify="left", box=style, pad_edge=False)
    table.add_column("file", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True, min_width=8)
    table.add_column("sha256", no_wrap=True, min_width=12)
    table.add_column("target", no_wrap=True, min_width=len(target))
    for line in sums.read_text().splitlines() if sums.exists() else []:
        digest, name = line.split(maxsplit=1)
        path = sums.parent / name.lstrip("*")
        table.add_row(path.name, human_size(path.stat().st_size if path.exists() else 0), digest[:12], target)
    return table


def last_lines(path: Path, count: int) -> list[str]:
    """A log's last lines as a terminal would show them (a carriage return starts the line over)."""
    try:
        with path.open("rb") as f:
            f.seek(max(f.seek(0, io.SEEK_END) - 256 * 1024, 0))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    lines = [line.rstrip("\r").rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    return [line for line in lines if line.strip()][-count:]


def mark(state: str) -> Any:
    if state == "running":
        return Spinner("dots", style="yellow")
    symbol, style = {"waiting": ("·", "dim"), "done": ("✓", "green"), "reused": ("≡", "green"), "up to date": ("=", "green"), "failed": ("✗", "bold red"), "interrupted": ("✗", "bold red"), "not run": ("-", "dim")}[state]
    return Text(symbol, style)


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def human_size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    return f"{n / 1e3:.1f} KB" if n < 1e6 else f"{n / 1e6:.1f} MB"


def shown(path: Path) -> str:
    """A path relative to the working directory when it is under it (artifacts/crio-1.36/…), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)

