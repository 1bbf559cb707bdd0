"""Shared set-up for the job and live-progress benchmarks: a throwaway database.

A benchmark never touches the studio's own data: it creates a fresh database the way the test
runner does (an SQLite file in a temporary folder, or `test_<name>` on PostgreSQL), migrates
it, and drops it afterwards.
"""

import contextlib
import tempfile
from pathlib import Path

from django.db import connection


@contextlib.contextmanager
def scratch_database():
    """Point the default connection at a new, migrated database for the duration."""
    old_name = connection.settings_dict["NAME"]
    test = connection.settings_dict.setdefault("TEST", {})
    old_test_name = test.get("NAME")
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as folder:
        if connection.vendor == "sqlite":
            test["NAME"] = str(Path(folder) / "bench.sqlite3")
        # Not serialized: nothing restores this database's contents, it is dropped.
        connection.creation.create_test_db(verbosity=0, autoclobber=True)
        try:
            yield connection.vendor
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
            test["NAME"] = old_test_name


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` fall (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]
