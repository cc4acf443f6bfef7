"""Settings a user may change without editing the repo (CRIOBUILD_* environment variables)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError

REPO_ROOT = Path(__file__).resolve().parent.parent
MODES = ("auto", "native", "qemu", "cross")
BASE_SOURCES = ("auto", "pull", "bootstrap")
TRANSFERS = ("auto", "mount", "copy")


@dataclass(frozen=True, kw_only=True)
class Settings:
    cache: Path
    recipes: Path
    artifacts: Path
    mode: str
    go_mirror: str | None
    base_source: str
    min_free_gib: float
    transfer: str
    engine_timeout: float  # seconds the Docker engine may leave a ping unanswered while a step runs
    http_timeout: float  # seconds to connect to a download's server, and between two reads

    @property
    def toolchains(self) -> Path:
        return self.cache / "toolchains"

    @property
    def clones(self) -> Path:
        return self.cache / "clones"

    @property
    def images(self) -> Path:
        return self.cache / "images"


def default_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "criobuild"


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    mode = choice(env, "CRIOBUILD_MODE", MODES)
    return Settings(
        cache=Path(env.get("CRIOBUILD_CACHE") or default_cache()).absolute(),
        recipes=Path(env.get("CRIOBUILD_RECIPES") or REPO_ROOT / "recipes").absolute(),
        artifacts=Path(env.get("CRIOBUILD_ARTIFACTS") or REPO_ROOT / "artifacts").absolute(),
        mode=mode,
        go_mirror=env.get("CRIOBUILD_GO_MIRROR") or None,
        base_source=choice(env, "CRIOBUILD_BASE", BASE_SOURCES),
        min_free_gib=gibibytes(env, "CRIOBUILD_MIN_FREE_GIB", 10),
        transfer=choice(env, "CRIOBUILD_TRANSFER", TRANSFERS),
        engine_timeout=seconds(env, "CRIOBUILD_ENGINE_TIMEOUT", 120, minimum=10),
        http_timeout=seconds(env, "CRIOBUILD_HTTP_TIMEOUT", 60, minimum=0.1),
    )


def choice(env: dict[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name) or allowed[0]
    if value not in allowed:
        raise BuildError(f"{name}={value!r} is not allowed", hint=f"set it to one of: {', '.join(allowed)}")
    return value


def gibibytes(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise BuildError(f"{name}={raw!r} is not an amount of disk", hint=f"set it to a number of GiB, 0 or more (default {default:g}), or unset it")
    return value


def seconds(env: dict[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not minimum <= value < float("inf"):
        raise BuildError(f"{name}={raw!r} is not a timeout", hint=f"set it to a number of seconds, at least {minimum:g} (default {default:g}), or unset it")
    return value
