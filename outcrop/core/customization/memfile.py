"""Plaintext bytes (a decrypted adapter) as a file path a native library can open, kept off the disk."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from types import TracebackType


class MemoryFile:
    """`data` in an anonymous in-memory file, opened by name through `path` (/proc/self/fd/N).

    Where memfd_create is missing, a 0600 temporary file in `fallback_dir` (deleted on close) stands in.
    llama.cpp loads a GGUF LoRA from such a /proc/self/fd path (checked with xllamacpp 2026.10).
    """

    def __init__(self, data: bytes, fallback_dir: Path | None = None, name: str = "outcrop") -> None:
        self._fd: int | None = None
        self._temp: str | None = None
        if hasattr(os, "memfd_create"):
            self._fd = os.memfd_create(name, os.MFD_CLOEXEC)
            self.path = f"/proc/self/fd/{self._fd}"
        else:
            fd, self._temp = tempfile.mkstemp(dir=fallback_dir, prefix=f".{name}-")  # mkstemp creates it 0600
            self._fd = fd
            self.path = self._temp
        try:
            with open(self._fd, "wb", closefd=False) as out:
                out.write(data)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp)
            self._temp = None

    def __enter__(self) -> MemoryFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten close still frees the plaintext
        with contextlib.suppress(Exception):  # at interpreter exit `os` may already be gone
            self.close()
