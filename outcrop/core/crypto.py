"""Envelope encryption primitives: the master key file and AES-256-GCM wrapping of small secrets."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from outcrop.errors import OutcropError

_NONCE = 12
_VERSION = b"\x01"


class MasterKey:
    """A 256-bit key from a 0600 file, created on first start; refuses a key others can read."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise OutcropError("the master key must be 32 bytes")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)

    @classmethod
    def from_file(cls, path: Path) -> MasterKey:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise OutcropError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
        return cls(path.read_bytes())

    def wrap(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context)

    def unwrap(self, blob: bytes, context: bytes) -> bytes:
        if blob[:1] != _VERSION:
            raise OutcropError("unknown ciphertext version")
        nonce, body = blob[1 : 1 + _NONCE], blob[1 + _NONCE :]
        return self._aead.decrypt(nonce, body, context)
