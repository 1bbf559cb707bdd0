"""Stored files follow their rows.

A row's files are deleted only once the deletion of the row (or the change that replaced its
file) has committed: a transaction that rolls back keeps every file its rows still name. The
domain apps connect `post_delete` receivers that hand their rows' files to
`delete_after_commit`, which is also the only way anything else deletes media. A file that
cannot be deleted is logged and left behind (an orphan the studio doctor can find with
`stored_file_names`); it never fails the request that deleted its row.
"""

import logging
import os
import posixpath
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from django.core.files.storage import Storage, default_storage
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models.fields.files import FieldFile

logger = logging.getLogger(__name__)


def delete_after_commit(
    files: Iterable[FieldFile | str],
    *,
    using: str = DEFAULT_DB_ALIAS,
    prune_depth: int | None = None,
) -> None:
    """Delete the stored files when the current transaction on `using` commits (at once
    outside one). Plain names are in the default storage; empty ones are skipped.

    With `prune_depth`, folders a deletion leaves empty on the filesystem are removed too, up
    to that many path components from the top (3 removes `takes/1/2` but keeps `takes/1`)."""
    targets = []
    for file in files:
        storage, name = (
            (file.storage, file.name) if isinstance(file, FieldFile) else (default_storage, file)
        )
        if name:
            targets.append((storage, name))
    if targets:
        transaction.on_commit(partial(_delete, targets, prune_depth), using=using)


def _delete(targets: list[tuple[Storage, str]], prune_depth: int | None) -> None:
    for storage, name in targets:
        try:
            storage.delete(name)
        except Exception:
            # The row is gone already; a leftover file is only an orphan, never an error page.
            logger.exception("Could not delete the stored file %s", name)
            continue
        if prune_depth is not None:
            _prune_empty_folders(storage, name, prune_depth)


def _prune_empty_folders(storage: Storage, name: str, depth: int) -> None:
    try:
        path = Path(storage.path(name))
    except NotImplementedError:
        return  # object storage has no folders to leave behind
    folders = posixpath.dirname(name).split("/")
    while len(folders) >= depth:
        path = path.parent
        try:
            # rmdir removes only an empty folder, so a file saved meanwhile is never lost.
            os.rmdir(path)
        except OSError:
            return
        folders.pop()


def stored_file_names(prefixes: Iterable[str], *, storage: Storage | None = None) -> list[str]:
    """The names of every file stored under the given folders (e.g. "takes"), sorted, as a
    FileField holds them: what the studio doctor compares against the rows."""
    storage = storage or default_storage
    found: list[str] = []
    pending = [prefix.strip("/") for prefix in prefixes]
    while pending:
        folder = pending.pop()
        try:
            folders, names = storage.listdir(folder)
        except FileNotFoundError:
            continue  # nothing was ever stored there
        found.extend(posixpath.join(folder, name) for name in names)
        pending.extend(posixpath.join(folder, sub) for sub in folders)
    return sorted(set(found))
