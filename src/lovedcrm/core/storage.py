"""File storage for uploaded and downloaded files (message attachments).

Files are stored under a key ``<organization id>/<kind>/<uuid>[.ext]``; the database keeps the
key (``message_attachments.file_url``) and files are served by the app to members of the
organization only, never by a public URL. The default backend is a local folder under
``data_dir/files``; ``LOVEDCRM_STORAGE_BACKEND=s3`` is not implemented yet (see the README).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from lovedcrm.config import Settings


class FileStorage(Protocol):
    def save(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` and return the key to keep in the database."""
        ...

    def path(self, key: str) -> Path:
        """Where ``key`` can be read from (a local file)."""
        ...

    def delete(self, key: str) -> None: ...


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _target(self, key: str) -> Path:
        target = (self.root / key).resolve()
        # Keys are built by the app, but a stored key must never reach outside the root.
        if self.root not in target.parents:
            raise ValueError(f"invalid storage key: {key!r}")
        return target

    def save(self, key: str, data: bytes) -> str:
        target = self._target(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return key

    def path(self, key: str) -> Path:
        return self._target(key)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._target(key).unlink()


def get_storage(settings: Settings) -> FileStorage:
    return LocalStorage(Path(settings.data_dir) / "files")
