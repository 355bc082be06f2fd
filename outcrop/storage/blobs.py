"""The blob store: opaque (already encrypted) bytes per account, in the data dir."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, account_id: str, blob_id: str) -> Path:
        if not (_SAFE.match(account_id) and _SAFE.match(blob_id)):
            raise ValueError("blob names are account and blob IDs only")
        return self.root / account_id / blob_id

    def put(self, account_id: str, blob_id: str, data: bytes) -> None:
        """Write to a temporary name and rename: a crash never leaves half a blob under the real name."""
        path = self._path(account_id, blob_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + ".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)

    def get(self, account_id: str, blob_id: str) -> bytes:
        return self._path(account_id, blob_id).read_bytes()

    def delete(self, account_id: str, blob_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(account_id, blob_id).unlink()
