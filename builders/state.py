"""doit's record of what each step last did, kept so that a killed run and concurrent runs lose nothing.

doit's default backend (dbm, which on many Pythons is dbm.dumb) is written once, when the run ends: a run
killed with SIGKILL forgets every step it finished, two runs in one checkout overwrite each other's
records, and one damaged record breaks every command. This backend is doit's own sqlite3 one, except
that each task's record is committed as doit saves it (write-ahead log: concurrent runs wait for each
other's short writes, never lose them), and a damaged database or record is refused in one line that
names the file and how to start afresh.
"""
from __future__ import annotations

import sqlite3

from doit.dependency import SqliteDB
from doit.exceptions import InvalidDodoFile

BUSY_SECONDS = 60.0


class TaskState(SqliteDB):
    desc = "sqlite3, each task's record committed as it is saved (criobuild)"

    def _sqlite3(self, name: str) -> sqlite3.Connection:
        try:
            check_records(name, self.codec)
            conn = super()._sqlite3(name)
            conn.execute(f"pragma busy_timeout = {int(BUSY_SECONDS * 1000)}")
            conn.execute("pragma journal_mode = wal")
            conn.execute("pragma synchronous = normal")
        except (sqlite3.Error, ValueError) as e:
            raise damaged(name, str(e)) from None
        except Exception as e:  # doit's DatabaseException: its own text says "bad format or is corrupted"
            raise damaged(name, str(e).rsplit("Original error: ", 1)[-1]) from None
        return conn

    def set(self, task_id: str, dependency: str, value: object) -> None:
        super().set(task_id, dependency, value)
        self._conn.execute("insert or replace into doit values (?,?)", (task_id, self.codec.encode(self._cache[task_id])))
        self._conn.commit()
        self._dirty.discard(task_id)

    def remove(self, task_id: str) -> None:
        super().remove(task_id)
        self._conn.commit()

    def remove_all(self) -> None:
        super().remove_all()
        self._conn.commit()


def check_records(name: str, codec: object) -> None:
    """Every record decodes (a damaged one would stop doit in the middle of deciding what to run)."""
    conn = sqlite3.connect(name, timeout=BUSY_SECONDS)
    try:
        exists = conn.execute("select 1 from sqlite_master where type = 'table' and name = 'doit'").fetchone()
        rows = conn.execute("select task_id, task_data from doit").fetchall() if exists else []
    finally:
        conn.close()
    for task_id, data in rows:
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            if not isinstance(codec.decode(text), dict):  # type: ignore[attr-defined]
                raise ValueError("not a record")
        except (ValueError, UnicodeDecodeError, TypeError) as e:
            raise ValueError(f"the record of {task_id} is damaged ({e})") from None


def damaged(name: str, why: str) -> InvalidDodoFile:
    return InvalidDodoFile(
        f"doit's state file {name} cannot be read: {why}. Remove it to start afresh (`rm {name}*`): "
        "every step then runs once more, and the cache keeps that quick"
    )
