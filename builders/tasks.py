"""doit task dictionaries. dodo.py only loops over recipes and yields these."""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from doit.exceptions import TaskFailed

from .errors import BuildError
from .recipe import Recipe
from .settings import Settings


def as_action(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a user error into a clean doit failure; bugs keep their traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
        except BuildError as e:
            print(f"error: {e}", file=sys.stderr)
            return TaskFailed(str(e))
        except KeyboardInterrupt:
            return TaskFailed("interrupted")
        return None if result is None or result is True else result

    return wrapper


def about(recipes: list[Recipe], settings: Settings) -> dict[str, Any]:
    def show() -> None:
        print("criobuild: build CRI-O and its companions for arm64 from pinned recipes.")
        print(f"recipes in {settings.recipes}:")
        for r in recipes:
            print(f"  doit build:{r.name:<12} CRI-O {r.crio.version} for {r.target.distro} {r.target.suite} {r.target.arch}")
        print("  doit check:kernel        can this kernel run CRI-O?")
        print("`doit list` shows every task.")

    return {"actions": [show], "uptodate": [False], "verbosity": 2}
