"""Account keyrings (KMS-like): each account's default data key and its customer-managed keys.

Customer content is sealed with AES-256-GCM under one of the account's keys; each key's material is
wrapped by the master key. Disabling a key makes what it sealed unreadable; deleting it (after the
waiting period) destroys the material, and with it the data (crypto-shredding).
"""

from __future__ import annotations

import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import AccessService
from outcrop.core.accounts import caller_of
from outcrop.core.cache import Generation
from outcrop.core.crypto import MasterKeyring, new_key, read_keyring, write_keyring
from outcrop.core.governance import CallContext
from outcrop.errors import AccessDenied, Conflict, Invalid, NotFound, OutcropError
from outcrop.storage.repositories import Accounts, AccountScope, checkpoint
from outcrop.storage.tables import AccessKey, KmsKey

_SEALED = b"\x03"
_ID_LEN = 36
_NONCE = 12
_STATES = {"Enabled": "enabled", "Disabled": "disabled", "PendingDeletion": "pending deletion"}
_KEY_ARN = re.compile(r"^arn:aws:kms:[^:]*:(\d{12}):key/([0-9a-f-]{36})$")


class KeyService:
    def __init__(self, sessions: sessionmaker[Session], master: MasterKeyring, access: AccessService,
                 region: str) -> None:
        self.sessions = sessions
        self.master = master
        self.access = access
        self.region = region
        self.generation = Generation(sessions, "keys")
        self._aeads: dict[str, tuple[str, str, Any]] = {}  # key ID → (account, state, AESGCM)
        self._defaults: dict[str, str] = {}  # account → its default key ID
        self._lock = threading.Lock()

    def arn(self, account_id: str, key_id: str) -> str:
        return f"arn:aws:kms:{self.region}:{account_id}:key/{key_id}"

    # -- sealing customer content ------------------------------------------------------------------

    def seal(self, account_id: str, plaintext: bytes, context: str, key_ref: str | None = None) -> bytes:
        """Encrypt under the given customer key (ID or ARN) or the account's default key."""
        key_id = self.resolve(account_id, key_ref) if key_ref else self._default(account_id)
        aead = self._aead(account_id, key_id)
        nonce = secrets.token_bytes(_NONCE)
        return _SEALED + key_id.encode() + nonce + aead.encrypt(nonce, plaintext, _aad(account_id, context))

    def open(self, account_id: str, sealed: bytes, context: str) -> bytes:
        if sealed[:1] != _SEALED:
            raise OutcropError("not sealed data")
        key_id = sealed[1 : 1 + _ID_LEN].decode()
        nonce, body = sealed[1 + _ID_LEN : 1 + _ID_LEN + _NONCE], sealed[1 + _ID_LEN + _NONCE :]
        return self._aead(account_id, key_id).decrypt(nonce, body, _aad(account_id, context))  # type: ignore[no-any-return]

    @staticmethod
    def key_of(sealed: bytes) -> str:
        return sealed[1 : 1 + _ID_LEN].decode()

    def _aead(self, account_id: str, key_id: str) -> Any:
        if self.generation.changed():
            self._forget()
        entry = self._aeads.get(key_id)
        if entry is None:
            with self.sessions() as session:
                row = AccountScope(session, account_id).get(KmsKey, key_id)
                if row is None:
                    raise AccessDenied(f"The KMS key {self.arn(account_id, key_id)} does not exist: the data it "
                                       "protected cannot be read.")
                entry = (row.account_id, row.state, self._material(row))
            self._aeads[key_id] = entry
        owner, state, aead = entry
        if owner != account_id:
            raise AccessDenied("The data was sealed for another account.")
        if state != "Enabled":
            raise AccessDenied(f"{self.arn(account_id, key_id)} is {_STATES[state]}: the data it protects cannot be "
                               "read until the key is enabled.")
        return aead

    def _material(self, row: KmsKey) -> Any:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(self.master.unwrap(row.material_wrapped, _material_context(row)))

    def _default(self, account_id: str) -> str:
        key_id = self._defaults.get(account_id)
        if key_id is not None:
            return key_id
        with self._lock, self.sessions.begin() as session:
            scope = AccountScope(session, account_id)
            row = scope.first(KmsKey, KmsKey.manager == "AWS")
            if row is None:
                row = self._new_key(scope, "AWS", "Default data key of the account")
            key_id = self._defaults[account_id] = row.id
        return key_id

    def _new_key(self, scope: AccountScope, manager: str, description: str) -> KmsKey:
        row = KmsKey(id=str(uuid.uuid4()), account_id=scope.account_id, manager=manager, description=description,
                     state="Enabled", created_at=datetime.now(UTC), material_wrapped=b"")
        row.material_wrapped = self.master.wrap(new_key(), _material_context(row))
        scope.add(row)
        return row

    def _forget(self) -> None:
        self._aeads.clear()

    # -- customer-managed keys ---------------------------------------------------------------------

    def create_key(self, ctx: CallContext, description: str = "") -> dict[str, Any]:
        caller = caller_of(ctx)
        if not isinstance(description, str) or len(description) > 8192:
            raise Invalid("Description must be a string of at most 8192 characters")
        self.access.require(ctx, self.arn(caller.account_id, "*"))
        with self.sessions.begin() as session:
            row = self._new_key(AccountScope(session, caller.account_id), "CUSTOMER", description)
        return self._metadata(row)

    def describe_key(self, ctx: CallContext, key_ref: str) -> dict[str, Any]:
        with self._change(ctx, key_ref) as row:
            return self._metadata(row)

    def list_keys(self, ctx: CallContext) -> list[dict[str, Any]]:
        caller = caller_of(ctx)
        self.access.require(ctx, self.arn(caller.account_id, "*"))
        self.purge_due()
        with self.sessions() as session:
            rows = AccountScope(session, caller.account_id).rows(KmsKey, KmsKey.manager == "CUSTOMER")
        return [{"KeyId": r.id, "KeyArn": self.arn(r.account_id, r.id)} for r in rows]

    def enable(self, ctx: CallContext, key_ref: str) -> dict[str, Any]:
        return self._transition(ctx, key_ref, {"Enabled", "Disabled"}, "Enabled")

    def disable(self, ctx: CallContext, key_ref: str) -> dict[str, Any]:
        return self._transition(ctx, key_ref, {"Enabled", "Disabled"}, "Disabled")

    def schedule_deletion(self, ctx: CallContext, key_ref: str, days: int) -> dict[str, Any]:
        if not (isinstance(days, int) and 7 <= days <= 30):
            raise Invalid("PendingWindowInDays must be an integer between 7 and 30")
        return self._transition(ctx, key_ref, {"Enabled", "Disabled"}, "PendingDeletion",
                                datetime.now(UTC) + timedelta(days=days))

    def cancel_deletion(self, ctx: CallContext, key_ref: str) -> dict[str, Any]:
        """As in KMS, a key whose deletion is cancelled comes back disabled."""
        return self._transition(ctx, key_ref, {"PendingDeletion"}, "Disabled")

    def _transition(self, ctx: CallContext, key_ref: str, allowed: set[str], state: str,
                    deletion_date: datetime | None = None) -> dict[str, Any]:
        with self._change(ctx, key_ref, write=True) as row:
            if row.state not in allowed:
                raise Conflict(f"{self.arn(row.account_id, row.id)} is {_STATES[row.state]}.")
            row.state, row.deletion_date = state, deletion_date
            return self._metadata(row)

    def require_use(self, ctx: CallContext, account_id: str, key_id: str, action: str) -> None:
        """Sealing with, or opening under, a customer-managed key needs that KMS permission on the key."""
        if self._is_customer(account_id, key_id):
            self.access.require(ctx, self.arn(account_id, key_id), action)

    def _is_customer(self, account_id: str, key_id: str) -> bool:
        if self._defaults.get(account_id) == key_id:
            return False
        with self.sessions() as session:
            row = AccountScope(session, account_id).get(KmsKey, key_id)
        return row is not None and row.manager == "CUSTOMER"

    def purge_due(self, now: datetime | None = None) -> int:
        """Destroy the keys whose deletion date has passed (crypto-shredding what they sealed)."""
        now = now or datetime.now(UTC)
        with self.sessions.begin() as session:
            due = [r for r in Accounts(session).rows_of(KmsKey)
                   if r.deletion_date is not None and r.deletion_date.replace(tzinfo=UTC) <= now]
            for row in due:
                session.delete(row)
            if due:
                self.generation.bump(session)
        if due:
            self._forget()
            # secure_delete zeroes the freed pages; the checkpoint moves them out of the write-ahead log.
            with self.sessions() as session:
                checkpoint(session)
        return len(due)

    @contextmanager
    def _change(self, ctx: CallContext, key_ref: str, write: bool = False) -> Iterator[KmsKey]:
        caller = caller_of(ctx)
        with self.sessions.begin() as session:
            account = AccountScope(session, caller.account_id)
            row = account.get(KmsKey, self.resolve(caller.account_id, key_ref))
            if row is None or row.manager != "CUSTOMER":
                raise NotFound(f"Key '{self.arn(caller.account_id, str(key_ref))}' does not exist")
            self.access.require(ctx, self.arn(row.account_id, row.id))
            yield row
            if write:
                self.generation.bump(session)
        if write:
            self._forget()

    def resolve(self, account_id: str, key_ref: str) -> str:
        """A key ID or ARN → the ID; an ARN of another account is reported as not found."""
        if not isinstance(key_ref, str) or not key_ref:
            raise Invalid("KeyId must be a key ID or key ARN")
        match = _KEY_ARN.match(key_ref)
        if match:
            if match[1] != account_id:
                raise NotFound(f"Key '{key_ref}' does not exist")
            return match[2]
        return key_ref

    def _metadata(self, row: KmsKey) -> dict[str, Any]:
        meta = {"AWSAccountId": row.account_id, "KeyId": row.id, "Arn": self.arn(row.account_id, row.id),
                "CreationDate": row.created_at.replace(tzinfo=UTC).timestamp(), "Enabled": row.state == "Enabled",
                "Description": row.description, "KeyUsage": "ENCRYPT_DECRYPT", "KeyState": row.state,
                "Origin": "AWS_KMS", "KeyManager": row.manager, "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
                "KeySpec": "SYMMETRIC_DEFAULT", "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"], "MultiRegion": False}
        if row.deletion_date is not None:
            meta["DeletionDate"] = row.deletion_date.replace(tzinfo=UTC).timestamp()
        return meta


def _aad(account_id: str, context: str) -> bytes:
    return f"{account_id}\0{context}".encode()


def _material_context(row: KmsKey) -> bytes:
    return f"kms:{row.account_id}:{row.id}".encode()


def rotate_master(sessions: sessionmaker[Session], path: Path) -> int:
    """Put a new master key first, re-wrap every wrapped secret under it, then drop the old keys.

    A running server keeps working throughout: it reads the keyring file again when it meets a blob
    wrapped by a key it does not hold, and before it wraps anything new.
    """
    fresh, old = new_key(), read_keyring(path)
    write_keyring(path, [fresh, *old])
    ring = MasterKeyring(read_keyring(path), path)
    rewrapped = 0
    for _ in range(2):  # a second pass catches what a running server wrapped with the old key meanwhile
        with sessions.begin() as session:
            every = Accounts(session)
            for key in every.rows_of(AccessKey):
                if not ring.wrapped_by_primary(key.secret_wrapped):
                    key.secret_wrapped = ring.wrap(ring.unwrap(key.secret_wrapped, key.id.encode()), key.id.encode())
                    rewrapped += 1
            for row in every.rows_of(KmsKey):
                if not ring.wrapped_by_primary(row.material_wrapped):
                    context = _material_context(row)
                    row.material_wrapped = ring.wrap(ring.unwrap(row.material_wrapped, context), context)
                    rewrapped += 1
    write_keyring(path, [fresh])
    return rewrapped

