"""The SQLite backend keeps each process's connections between requests (studio/sqlite/base.py):
the next request's thread gets a connection already open, never one in a transaction, never
one to a database file that was replaced."""

import copy
import sqlite3
import threading

import pytest
from django.db import connections

from studio.sqlite import base

pytestmark = pytest.mark.django_db  # settings of the default connection, not its data


@pytest.fixture
def database(tmp_path):
    """A wrapper (as Django makes one per thread) on a file database of its own."""
    settings = copy.deepcopy(connections["default"].settings_dict)
    settings["NAME"] = str(tmp_path / "pooled.sqlite3")
    settings["ENGINE"] = "studio.sqlite"
    made = []

    def wrapper():
        made.append(base.DatabaseWrapper(settings, alias="pooled"))
        return made[-1]

    yield wrapper
    for each in made:
        if each._thread_ident == threading.get_ident():
            each.close()
    base.pool.close_all()


def _raw(wrapper) -> sqlite3.Connection:
    wrapper.ensure_connection()
    return wrapper.connection


def test_the_next_thread_gets_the_connection_the_last_one_closed(database):
    first = database()
    opened = _raw(first)
    first.close()

    found = {}

    def next_request():
        wrapper = database()
        found["connection"] = _raw(wrapper)
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
            found["answer"] = cursor.fetchone()[0]
        wrapper.close()

    thread = threading.Thread(target=next_request)
    thread.start()
    thread.join()
    assert found == {"connection": opened, "answer": 1}


def test_a_kept_connection_starts_as_django_opens_one(database):
    wrapper = database()
    _raw(wrapper)
    with wrapper.cursor() as cursor:
        cursor.execute("PRAGMA foreign_keys = OFF")  # left behind by a careless caller
    wrapper.close()
    again = database()
    with again.cursor() as cursor:
        assert cursor.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert again.get_autocommit()


def test_a_connection_closed_inside_a_transaction_is_not_kept(database):
    wrapper = database()
    with wrapper.cursor() as cursor:
        cursor.execute("CREATE TABLE notes (text TEXT)")
    opened = _raw(wrapper)
    wrapper.set_autocommit(False)
    with wrapper.cursor() as cursor:
        cursor.execute("INSERT INTO notes VALUES ('half written')")
    wrapper.close()  # mid-transaction: given up, not handed on with its write

    again = database()
    assert _raw(again) is not opened
    with again.cursor() as cursor:
        assert cursor.execute("SELECT count(*) FROM notes").fetchone()[0] == 0


def test_a_replaced_database_file_gets_new_connections(database, tmp_path):
    wrapper = database()
    with wrapper.cursor() as cursor:
        cursor.execute("CREATE TABLE old_file (id INTEGER)")
    wrapper.close()
    path = tmp_path / "pooled.sqlite3"
    for leftover in tmp_path.glob("pooled.sqlite3*"):
        leftover.unlink()
    fresh = sqlite3.connect(path)
    fresh.execute("CREATE TABLE new_file (id INTEGER)")
    fresh.commit()
    fresh.close()

    with database().cursor() as cursor:
        tables = {row[0] for row in cursor.execute("SELECT name FROM sqlite_master")}
    assert tables == {"new_file"}


def test_the_pool_keeps_a_bounded_number(database, monkeypatch):
    monkeypatch.setattr(base, "POOL_SIZE", 2)
    wrappers = [database() for _ in range(4)]
    opened = [_raw(wrapper) for wrapper in wrappers]
    for wrapper in wrappers:
        wrapper.close()
    reused = {id(_raw(database())) for _ in range(4)}
    assert len(reused & {id(connection) for connection in opened}) == 2


def test_connections_to_a_deleted_database_are_closed(database, tmp_path):
    wrapper = database()
    old = _raw(wrapper)
    wrapper.close()
    for leftover in tmp_path.glob("pooled.sqlite3*"):
        leftover.unlink()
    other = copy.deepcopy(wrapper.settings_dict)
    other["NAME"] = str(tmp_path / "other.sqlite3")
    elsewhere = base.DatabaseWrapper(other, alias="elsewhere")
    _raw(elsewhere)
    elsewhere.close()  # giving this one back sweeps the deleted file's
    with pytest.raises(sqlite3.ProgrammingError):
        old.execute("SELECT 1")
    base.pool.close_all()


def test_a_connection_whose_file_was_replaced_while_open_is_not_kept(database, tmp_path):
    wrapper = database()
    opened = _raw(wrapper)
    for leftover in tmp_path.glob("pooled.sqlite3*"):
        leftover.unlink()
    sqlite3.connect(tmp_path / "pooled.sqlite3").close()  # a new file at the same path
    wrapper.close()
    with pytest.raises(sqlite3.ProgrammingError):
        opened.execute("SELECT 1")  # closed, not kept for the new file
    assert _raw(database()) is not opened
