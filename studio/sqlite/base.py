"""Django's SQLite backend, with its connections kept for the next request of the process.

Under ASGI every request runs its view in a thread of its own, and Django's connections are
per thread, so each request opened the database afresh: connecting, the pragmas, SQLite
reading the schema and its first pages again (in one process, loading the board with a fresh
connection each time cost 1.3-2x its time with one kept; served, the gain is smaller). Here a
connection that closes outside a transaction goes back to a small pool of its process, and the
next request's thread takes it (Django opens SQLite connections usable from any thread).

A pooled connection is only reused on the same database file (a database deleted and made
again at the same path gets new connections); in-memory databases are Django's own affair.
"""

import atexit
import contextlib
import os
import threading

from django.db.backends.sqlite3 import base

POOL_SIZE = 16  # per database file and process: more than the requests a process runs at once


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list[tuple[object, tuple[int, int]]]] = {}

    def take(self, path: str):
        """A kept connection to the file now at `path` and the file's identity, or None."""
        identity = _file_identity(path)
        with self._lock:
            idle = self._idle.get(path, [])
            while idle:
                connection, made_on = idle.pop()
                if made_on == identity:
                    return connection, made_on
                _close_quietly(connection)  # the file was replaced
        return None

    def give(self, path: str, connection, *, made_on: tuple[int, int] | None) -> bool:
        """Keep `connection`, opened on the file `made_on` identifies, if that file is still
        the one at `path` and the pool has room."""
        if made_on is None or _file_identity(path) != made_on:
            return False
        with self._lock:
            self._drop_replaced(keep=path)
            idle = self._idle.setdefault(path, [])
            if len(idle) >= POOL_SIZE:
                return False
            idle.append((connection, made_on))
        return True

    def _drop_replaced(self, *, keep: str) -> None:
        """Close the kept connections of database files deleted or replaced since (a test's
        or a benchmark's scratch database), so they do not hold the old files open."""
        for path in [path for path in self._idle if path != keep]:
            identity = _file_identity(path)
            kept = self._idle[path]
            for connection, made_on in [entry for entry in kept if entry[1] != identity]:
                kept.remove((connection, made_on))
                _close_quietly(connection)
            if not kept:
                del self._idle[path]

    def close_all(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection, _ in connections:
                _close_quietly(connection)


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _close_quietly(connection) -> None:
    with contextlib.suppress(Exception):  # a broken connection is gone either way
        connection.close()


pool = _Pool()
atexit.register(pool.close_all)  # a clean exit checkpoints the WAL


class DatabaseWrapper(base.DatabaseWrapper):
    def _pooled(self) -> bool:
        return not self.is_in_memory_db()

    def get_new_connection(self, conn_params):
        self.opened_on = None  # the database file's identity, for the pool
        if not self._pooled():
            return super().get_new_connection(conn_params)
        path = str(self.settings_dict["NAME"])
        kept = pool.take(path)
        if kept is None:
            connection = super().get_new_connection(conn_params)
            self.opened_on = _file_identity(path)
            return connection
        connection, self.opened_on = kept
        # The settings Django gives a new connection, whatever the last user left.
        for command in ("PRAGMA foreign_keys = ON", *self.init_commands):
            if command := command.strip():
                connection.execute(command)
        return connection

    def _close(self):
        connection = self.connection
        if (
            connection is not None
            and self._pooled()
            and not self.in_atomic_block
            and not connection.in_transaction
            and pool.give(
                str(self.settings_dict["NAME"]),
                connection,
                made_on=getattr(self, "opened_on", None),
            )
        ):
            return None
        return super()._close()
