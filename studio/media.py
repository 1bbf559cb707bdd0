"""Local files for stored media, whatever the storage.

Decoding video, sampling frames and face scoring run in the CPU pool on local files. With the
default FileSystemStorage a stored file already is one (its own path, nothing copied). With
object storage (S3 through django-storages, `MEDIA_STORAGE=s3`) the file is downloaded once
into MEDIA_CACHE_DIR under its storage name. That cache is only correct because stored names
never change content: references are named by their sha256, takes' videos and frames carry a
random token (dramas.models), so a re-render writes new names instead of overwriting old ones.
"""

import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.db.models.fields.files import FieldFile


def local_path(file: FieldFile) -> str:
    """A local path holding the bytes of a stored file."""
    storage, name = file.storage, file.name
    try:
        return storage.path(name)
    except NotImplementedError:
        pass
    target = _cache_path(name)
    if target.exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so a concurrent reader never sees half a file.
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    try:
        with os.fdopen(handle, "wb") as out, storage.open(name, "rb") as source:
            shutil.copyfileobj(source, out, length=1024 * 1024)
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return str(target)


def forget_local(files: list[FieldFile]) -> None:
    """Drop cached copies that are no longer needed (a finished take's video and frames)."""
    for file in files:
        try:
            file.storage.path(file.name)
        except NotImplementedError:
            _cache_path(file.name).unlink(missing_ok=True)
        # else: the file on disk is the stored file itself; nothing was copied


def _cache_path(name: str) -> Path:
    root = Path(settings.MEDIA_CACHE_DIR).resolve()
    target = (root / name).resolve()
    if not target.is_relative_to(root):  # storage names come from our code; still, stay inside
        raise ValueError(f"unexpected storage name: {name!r}")
    return target
