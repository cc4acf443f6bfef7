"""What a run owns: temporary names that say whose they are, swept when their process is gone, and files
made with the modes the user's umask gives (never mkstemp's 0600)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builders import files, lifecycle


@pytest.fixture
def umask027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_atomic_writes_and_temporary_dirs_follow_the_umask(tmp_path: Path) -> None:
    files.write_atomically(tmp_path / "SHA256SUMS", "x\n")
    assert oct((tmp_path / "SHA256SUMS").stat().st_mode & 0o777) == "0o644"
    assert oct(files.temp_dir(tmp_path, "staging").stat().st_mode & 0o777) == "0o755"


def test_a_tighter_umask_is_respected(tmp_path: Path, umask027) -> None:
    files.write_atomically(tmp_path / "manifest.json", "{}\n")
    assert oct((tmp_path / "manifest.json").stat().st_mode & 0o777) == "0o640"
    assert oct(files.temp_dir(tmp_path, "work").stat().st_mode & 0o777) == "0o750"


def test_the_sweep_removes_what_a_dead_process_left_and_nothing_of_a_live_one(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "from builders import files; from pathlib import Path; import sys; "
                           "print(files.temp_dir(Path(sys.argv[1]) / 'work' / 'crio-1.36', 'cri-o'))", str(tmp_path)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    left = Path(dead.stdout.strip())
    mine = files.temp_dir(tmp_path / "work" / "crio-1.36", "conmon")
    old_style = tmp_path / ".cri-o.json.partial"
    old_style.write_text("")
    os.utime(old_style, (time.time() - 7200, time.time() - 7200))
    deep = tmp_path / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    (deep / left.name).mkdir()  # deeper than anything the tool makes: not looked at
    removed = lifecycle.sweep_files([tmp_path])
    assert sorted(removed) == sorted([left, old_style])
    assert mine.exists() and not left.exists() and (deep / left.name).exists()


def test_a_run_label_of_this_host_is_judged_and_another_hosts_is_not() -> None:
    assert lifecycle.run_alive(lifecycle.run_label()) is True
    assert lifecycle.run_alive("elsewhere:1-2") is None
    gone = subprocess.run([sys.executable, "-c", "from builders import lifecycle; print(lifecycle.run_label())"], capture_output=True, text=True, check=True)
    assert lifecycle.run_alive(gone.stdout.strip()) is False


def test_swap_into_place_replaces_a_tree_and_leaves_no_temporary_name(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("")
    with files.dir_atomically(tmp_path / "out") as made:
        (made / "new").write_text("")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in (tmp_path / "out").iterdir()] == ["new"]


def test_shared_locks_share_and_an_exclusive_one_waits(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    holder = "import sys, time; from pathlib import Path; from builders import files\nwith files.locked(Path(sys.argv[1]), shared=True):\n    print('held', flush=True); time.sleep(3)"
    other = subprocess.Popen([sys.executable, "-c", holder, str(lock)], stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline() == "held\n"
    start = time.monotonic()
    with files.locked(lock, shared=True):  # at once: readers share
        assert time.monotonic() - start < 2
    with files.locked(lock, "waiting"):  # only once the reader is done
        assert time.monotonic() - start > 2
    other.wait()
