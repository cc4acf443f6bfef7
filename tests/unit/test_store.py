"""The store of component builds (builders/store.py): an entry is whole or absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from builders import store

KEY = "f" * 64


def staged(root: Path) -> Path:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/conmon").write_bytes(b"\x7fELF conmon")
    (root / "usr/bin/conmon").chmod(0o755)
    (root / "usr/bin/link").symlink_to("conmon")
    return root


def test_a_published_build_is_kept_with_its_manifest(tmp_path: Path) -> None:
    tree = staged(tmp_path / "staging/conmon")
    assert not store.has(tmp_path / "cache", KEY)
    store.publish(tmp_path / "cache", KEY, tree, {"commit": "a" * 40, "built_for": "crio-1.18"})
    assert store.has(tmp_path / "cache", KEY) and store.manifest_of(tmp_path / "cache", KEY)["built_for"] == "crio-1.18"
    kept = store.entry(tmp_path / "cache", KEY) / "tree"
    assert (kept / "usr/bin/conmon").read_bytes() == b"\x7fELF conmon" and os.readlink(kept / "usr/bin/link") == "conmon"
    assert (kept / "usr/bin/conmon").stat().st_ino == (tree / "usr/bin/conmon").stat().st_ino  # a link, not a copy


def test_an_interrupted_publish_leaves_no_entry_and_no_temporary_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = staged(tmp_path / "staging/conmon")

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store.os, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.publish(tmp_path / "cache", KEY, tree, {"built_for": "crio-1.18"})
    assert not store.has(tmp_path / "cache", KEY)
    assert list(store.builds(tmp_path / "cache").iterdir()) == []


def test_a_tree_on_another_filesystem_is_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = staged(tmp_path / "staging/conmon")

    def cross_device(source: str, dest: str) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(store.os, "link", cross_device)
    store.link_tree(tree, tmp_path / "copy")
    copied = tmp_path / "copy/usr/bin/conmon"
    assert copied.read_bytes() == b"\x7fELF conmon" and copied.stat().st_mode & 0o777 == 0o755
    assert copied.stat().st_ino != (tree / "usr/bin/conmon").stat().st_ino
