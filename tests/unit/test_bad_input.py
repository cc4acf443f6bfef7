"""Bad input that once gave a traceback, or was taken silently: each is one paragraph that names the file, key or
value and the fix, with a non-zero exit, from the real `doit` command."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOOD = (REPO / "recipes" / "crio-1.36.toml").read_text()


def doit(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=cwd, capture_output=True, text=True, env=os.environ | (env or {}), timeout=timeout)


def one_clear_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    for w in words:
        assert w in result.stderr, result.stderr


def test_a_recipe_that_is_not_utf8_names_the_file_the_byte_and_its_line(tmp_path: Path) -> None:
    (tmp_path / "crio-1.36.toml").write_bytes(GOOD.replace("# ", "# caf\xe9 ", 1).encode("latin-1"))
    one_clear_error(doit("list", env={"CRIOBUILD_RECIPES": str(tmp_path)}), f"{tmp_path / 'crio-1.36.toml'}: not UTF-8 text: byte 0xe9 on line 1", "save the recipe as UTF-8")


def test_a_directory_named_like_a_recipe_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "crio-1.36.toml").write_text(GOOD)
    (tmp_path / "crio-1.99.toml").mkdir()
    one_clear_error(doit("list", env={"CRIOBUILD_RECIPES": str(tmp_path)}), f"{tmp_path / 'crio-1.99.toml'}: is a directory, not a recipe file")


def test_an_empty_recipe_directory_is_refused(tmp_path: Path) -> None:
    one_clear_error(doit("list", env={"CRIOBUILD_RECIPES": str(tmp_path)}), f"recipe directory {tmp_path} has no recipes", "unset CRIOBUILD_RECIPES")


@pytest.mark.parametrize("value", ["abc", "-5", "nan", "inf"])
def test_min_free_gib_must_be_an_amount_of_disk(value: str) -> None:
    one_clear_error(doit("list", env={"CRIOBUILD_MIN_FREE_GIB": value}), f"CRIOBUILD_MIN_FREE_GIB={value!r} is not an amount of disk", "number of GiB")


@pytest.mark.parametrize(("name", "value"), [("CRIOBUILD_ENGINE_TIMEOUT", "soon"), ("CRIOBUILD_ENGINE_TIMEOUT", "1"), ("CRIOBUILD_HTTP_TIMEOUT", "-1")])
def test_timeouts_are_checked_when_the_settings_are_read(name: str, value: str) -> None:
    one_clear_error(doit("list", env={name: value}), f"{name}={value!r} is not a timeout")


def test_the_kernel_check_stops_reading_a_config_that_never_ends() -> None:
    result = doit("check:kernel", "--config", "/dev/zero", timeout=30)
    assert result.returncode == 2
    assert "/dev/zero: is not a kernel config: it is over 16 MiB" in result.stdout + result.stderr


def test_an_unknown_recipe_lists_the_recipes_closest_first() -> None:
    result = doit("build:crio-1.3")
    one_clear_error(result, "there is no recipe 'crio-1.3'", "hint: recipes: crio-1.37, crio-1.36, crio-1.35")


def test_an_unknown_target_lists_the_targets_closest_first() -> None:
    result = doit("build:crio-1.36@trixie-arm32")
    one_clear_error(result, "there is no target 'trixie-arm32' for crio-1.36", "hint: targets: trixie-armhf", "without @<target>: trixie-arm64")
    assert "Invalid parameter" not in result.stderr
