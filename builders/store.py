"""Component builds kept by what went into them, so a second recipe that needs the same build reuses it.

<cache>/builds/<key>/ holds one build: tree/ (the staged DESTDIR tree) and build.json (its staging
manifest and the recipe it was built for). The key is the sha256 of the build's inputs
(builders/build.py: build_inputs). An entry appears by one rename of a finished temporary directory, so
an interrupted build leaves none; <cache>/builds/<key>.lock makes a second build of one key wait for the
first and then take its result. Trees are hard links where the filesystem allows (nothing writes into a
staged tree: packaging copies it), copies elsewhere. `rm -rf <cache>/builds` forgets every build.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .files import dir_atomically, locked

MANIFEST = "build.json"


def builds(cache: Path) -> Path:
    return cache / "builds"


def entry(cache: Path, key: str) -> Path:
    return builds(cache) / key


def has(cache: Path, key: str) -> bool:
    return (entry(cache, key) / MANIFEST).is_file()


@contextlib.contextmanager
def claimed(cache: Path, key: str, waiting: str) -> Iterator[None]:
    """Hold the key's lock: one build per key at a time on this machine."""
    with locked(builds(cache) / f"{key}.lock", waiting):
        yield


def publish(cache: Path, key: str, tree: Path, manifest: dict) -> None:
    """Keep a finished build under its key (the caller holds the key's lock)."""
    with dir_atomically(entry(cache, key)) as made:  # replaces an entry without its build.json: damaged by hand
        link_tree(tree, made / "tree")
        (made / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def manifest_of(cache: Path, key: str) -> dict:
    return json.loads((entry(cache, key) / MANIFEST).read_text())


def link_tree(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, symlinks=True, copy_function=link_or_copy, dirs_exist_ok=True)


def link_or_copy(source: str, dest: str) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another filesystem, or a file the kernel will not link for us
        shutil.copy2(source, dest)
