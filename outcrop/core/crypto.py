"""Envelope encryption primitives: the master keyring and AES-256-GCM wrapping under it.

Every wrapped blob names the master key that wrapped it (a 4-byte fingerprint), so a rotation can run
while the server serves: new blobs use the first key, older ones still unwrap until they are re-wrapped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
import threading
from collections.abc import Sequence
from pathlib import Path

from outcrop.errors import OutcropError

_NONCE = 12
_LEGACY = b"\x01"  # version 1: nonce + ciphertext, wrapped by the only master key there was
_TAGGED = b"\x02"  # version 2: fingerprint + nonce + ciphertext
_FP = 4


def fingerprint(key: bytes) -> bytes:
    return hashlib.sha256(b"outcrop-master-key" + key).digest()[:_FP]


def new_key() -> bytes:
    return secrets.token_bytes(32)


def _aead(key: bytes):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(key) != 32:
        raise OutcropError("a master key must be 32 bytes (base64 of 32 random bytes)")
    return AESGCM(key)


class MasterKeyring:
    """The master key and, during a rotation, the keys it replaces. The first one wraps; all unwrap."""

    def __init__(self, keys: Sequence[bytes], path: Path | None = None) -> None:
        if not keys:
            raise OutcropError("the master keyring is empty")
        self.path = path
        self._lock = threading.Lock()
        self._load(keys)

    def _load(self, keys: Sequence[bytes]) -> None:
        self._keys = [(fingerprint(k), _aead(k)) for k in keys]
        self._by_fp = dict(self._keys)
        self._mtime = self.path.stat().st_mtime_ns if self.path is not None and self.path.exists() else 0

    @classmethod
    def from_file(cls, path: Path, create: bool = True) -> MasterKeyring:
        """Read the keyring file, creating it (0600) with a fresh key on first start.

        A file the operator named is never created: a typo must not start the service on a new, empty key."""
        if not path.exists():
            if not create:
                raise OutcropError(f"master key file {path} does not exist")
            write_keyring(path, [new_key()], exclusive=True)
        return cls(read_keyring(path), path)

    @classmethod
    def from_secret(cls, value: str) -> MasterKeyring:
        """A key given in the environment: base64 of 32 bytes (rotated by changing the environment)."""
        return cls([_decode(value, "OUTCROP_MASTER_KEY")])

    @property
    def primary(self) -> bytes:
        return self._keys[0][0]

    def wrap(self, plaintext: bytes, context: bytes) -> bytes:
        self.reload_if_changed()  # a rotation may have put a new key first while we were running
        fp, aead = self._keys[0]
        nonce = secrets.token_bytes(_NONCE)
        return _TAGGED + fp + nonce + aead.encrypt(nonce, plaintext, context)

    def unwrap(self, blob: bytes, context: bytes) -> bytes:
        if blob[:1] == _LEGACY:
            return self._unwrap_legacy(blob, context)
        if blob[:1] != _TAGGED:
            raise OutcropError("unknown ciphertext version")
        fp, nonce, body = blob[1 : 1 + _FP], blob[1 + _FP : 1 + _FP + _NONCE], blob[1 + _FP + _NONCE :]
        aead = self._by_fp.get(fp)
        if aead is None and self.path is not None and self.path.exists():  # rotated under us: read the file again
            with self._lock:
                self._load(read_keyring(self.path))
            aead = self._by_fp.get(fp)
        if aead is None:
            raise OutcropError("the master key that wrapped this data is not in the keyring")
        return aead.decrypt(nonce, body, context)  # type: ignore[no-any-return]

    def wrapped_by_primary(self, blob: bytes) -> bool:
        return blob[:1] == _TAGGED and blob[1 : 1 + _FP] == self.primary

    def _unwrap_legacy(self, blob: bytes, context: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        nonce, body = blob[1 : 1 + _NONCE], blob[1 + _NONCE :]
        for _, aead in self._keys:
            try:
                return aead.decrypt(nonce, body, context)  # type: ignore[no-any-return]
            except InvalidTag:
                continue
        raise InvalidTag()

    def reload_if_changed(self) -> bool:
        if self.path is None or not self.path.exists():
            return False
        with self._lock:
            if self.path.stat().st_mtime_ns == self._mtime:
                return False
            self._load(read_keyring(self.path))
            return True


def read_keyring(path: Path) -> list[bytes]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise OutcropError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    raw = path.read_bytes()
    if len(raw) == 32:  # the first format: the raw key alone
        return [raw]
    return [_decode(line, str(path)) for line in raw.decode("ascii", "replace").split() if line]


def write_keyring(path: Path, keys: Sequence[bytes], exclusive: bool = False) -> None:
    """Write atomically, 0600 from the start (never a moment readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(base64.b64encode(k).decode() + "\n" for k in keys))
    if exclusive and path.exists():
        tmp.unlink()
        return
    tmp.replace(path)


def _decode(value: str, where: str) -> bytes:
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise OutcropError(f"{where}: a master key must be base64 of 32 random bytes") from None
    if len(key) != 32:
        raise OutcropError(f"{where}: a master key must be base64 of 32 random bytes, got {len(key)} bytes")
    return key
