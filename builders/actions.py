"""How a function becomes a step's action: its output goes to the step's log, a user error fails the step
cleanly (doit's TaskFailed, no traceback), an interrupt ends the run, and the first step of a run sweeps what
interrupted runs left. Every module that defines a doit task uses these (builders/tasks.py and the modules
whose steps they are: sources, go_toolchain, deb, tarball …)."""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from . import lifecycle
from .errors import BuildError, no_space
from .settings import Settings, load_settings
from .view import say, step_output

_swept = False


def as_action(func: Callable[..., Any], log: Path | None = None, name: str | None = None) -> Callable[..., Any]:
    """Turn a user error into a clean doit failure; bugs keep their traceback. With a log, everything the
    action prints goes there (see builders.view). An interrupt (Ctrl-C, SIGTERM) is not a failure: it ends
    the whole run, `doit --continue` included, once every cleanup on the way has run."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        sweep_once()
        with step_output(log):
            lifecycle.RUNNING_STEP = name
            try:
                result = func(*args, **kwargs)
            except KeyboardInterrupt as e:
                print(f"error: interrupted ({getattr(e, 'signum', None) and str(e) or 'SIGINT'})")
                raise
            except Exception as e:
                failure = user_error(e)
                if failure is None:
                    raise
                return TaskFailed(str(failure))
            finally:
                lifecycle.RUNNING_STEP = None
        return None if result is None or result is True else result

    return wrapper


def user_error(error: Exception) -> BuildError | None:
    """What the user can act on: our own errors, the Docker engine's (a refused connection, an API error) and
    a full disk; None for a bug, which keeps its traceback."""
    if isinstance(error, BuildError):
        return error
    if type(error).__module__.startswith(("docker", "requests", "urllib3")):
        from .container import engine_error  # docker-py loads in a tenth of a second: only when an engine failed

        return engine_error(error)
    if isinstance(error, OSError) and no_space(error):
        return disk_full(error)
    return None


def disk_full(error: OSError) -> BuildError:
    """ "no space left on <path>" with what is free there and where else the tool can write."""
    settings = load_settings()
    candidates = [Path(error.filename)] if error.filename else [settings.cache, settings.artifacts]
    return lifecycle.no_space_error(candidates)


def sweep_once() -> None:
    """The first step of a run removes the temporary files of runs that are gone (each names its process)."""
    global _swept
    if _swept:
        return
    _swept = True
    settings = load_settings()
    removed = lifecycle.sweep_files([settings.cache, settings.artifacts])
    if removed:
        say(f"removed {len(removed)} temporary files and directories that interrupted runs left: {', '.join(shown_names(removed))}")


def shown_names(paths: list[Path], limit: int = 4) -> list[str]:
    names = [p.name for p in paths[:limit]]
    return names + ([f"and {len(paths) - limit} more"] if len(paths) > limit else [])


def logged_actions(func: Callable[..., Any], args: list[Any], log: Path, name: str = "") -> dict[str, Any]:
    """A task's action and meta when it is a step of a build: the view shows it, its output goes to log."""
    return {"actions": [(as_action(func, log, name), args)], "meta": {"log": str(log)}, "verbosity": 2}


def step_log(settings: Settings, owner: str, name: str) -> Path:
    """artifacts/<recipe>/logs/<step>.log (owner "" for the steps recipes share: artifacts/logs/)."""
    return settings.artifacts / owner / "logs" / f"{name}.log"
