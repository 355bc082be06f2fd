"""Uploaded files (the OpenAI Files API; later the input of batch and customization jobs), sealed at rest."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from outcrop.core.access import AccessService
from outcrop.core.accounts import caller_of
from outcrop.core.governance import CallContext
from outcrop.core.kms import KeyService
from outcrop.errors import AccessDenied, Invalid, NotFound
from outcrop.storage.blobs import BlobStore
from outcrop.storage.repositories import AccountScope
from outcrop.storage.tables import StoredFile

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


@dataclass(frozen=True)
class FileInfo:
    id: str
    filename: str | None  # None when the key that sealed the name is disabled or deleted
    purpose: str
    bytes: int
    created_at: int
    kms_key_arn: str


class FileService:
    def __init__(self, keys: KeyService, blobs: BlobStore, access: AccessService) -> None:
        self.keys = keys
        self.blobs = blobs
        self.access = access
        self.sessions = keys.sessions

    def arn(self, account_id: str, file_id: str) -> str:
        return f"arn:aws:bedrock:{self.keys.region}:{account_id}:file/{file_id}"

    def create(self, ctx: CallContext, filename: str, purpose: str, data: bytes,
               kms_key_id: str | None = None) -> FileInfo:
        caller = caller_of(ctx)
        if purpose not in PURPOSES:
            raise Invalid(f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'")
        if not filename or len(filename) > 512:
            raise Invalid("The file must have a name of at most 512 characters")
        file_id = "file-" + secrets.token_hex(12)
        self.access.require(ctx, self.arn(caller.account_id, file_id))
        account = caller.account_id
        if kms_key_id is not None:
            self.keys.require_use(ctx, account, self.keys.resolve(account, kms_key_id), "kms:GenerateDataKey")
        sealed = self.keys.seal(account, data, f"file:{file_id}", kms_key_id)
        row = StoredFile(id=file_id, purpose=purpose, bytes=len(data), kms_key_id=KeyService.key_of(sealed),
                         created_at=datetime.now(UTC),
                         filename_encrypted=self.keys.seal(account, filename.encode(), f"file-name:{file_id}",
                                                           kms_key_id))
        self.blobs.put(account, file_id, sealed)
        try:
            with self.sessions.begin() as session:
                AccountScope(session, account).add(row)
        except BaseException:
            self.blobs.delete(account, file_id)  # nothing half-written is left behind
            raise
        return self._info(row)

    def list_files(self, ctx: CallContext, purpose: str | None = None) -> list[FileInfo]:
        caller = caller_of(ctx)
        self.access.require(ctx, self.arn(caller.account_id, "*"))
        with self.sessions() as session:
            scope = AccountScope(session, caller.account_id)
            rows = scope.rows(StoredFile, *([StoredFile.purpose == purpose] if purpose else []))
        return [self._info(r) for r in rows]

    def get(self, ctx: CallContext, file_id: str) -> FileInfo:
        return self._info(self._row(ctx, file_id))

    def content(self, ctx: CallContext, file_id: str) -> bytes:
        row = self._row(ctx, file_id)
        self.keys.require_use(ctx, row.account_id, row.kms_key_id, "kms:Decrypt")
        return self.keys.open(row.account_id, self.blobs.get(row.account_id, row.id), f"file:{row.id}")

    def content_of(self, account_id: str, file_id: str) -> bytes:
        """For a job's worker, which acts for the account that named the file (checked when the job was made)."""
        with self.sessions() as session:
            row = AccountScope(session, account_id).get(StoredFile, file_id)
        if row is None:
            raise NotFound(f"No such File object: {file_id}")
        return self.keys.open(account_id, self.blobs.get(account_id, file_id), f"file:{file_id}")

    def delete(self, ctx: CallContext, file_id: str) -> None:
        row = self._row(ctx, file_id)
        with self.sessions.begin() as session:
            scope = AccountScope(session, row.account_id)
            stored = scope.get(StoredFile, row.id)
            if stored is not None:
                scope.delete(stored)
        self.blobs.delete(row.account_id, row.id)

    def _row(self, ctx: CallContext, file_id: str) -> StoredFile:
        caller = caller_of(ctx)
        self.access.require(ctx, self.arn(caller.account_id, file_id))
        with self.sessions() as session:
            row = AccountScope(session, caller.account_id).get(StoredFile, file_id)
        if row is None:
            raise NotFound(f"No such File object: {file_id}")
        return row

    def _info(self, row: StoredFile) -> FileInfo:
        name = None
        with contextlib.suppress(AccessDenied):
            name = self.keys.open(row.account_id, row.filename_encrypted, f"file-name:{row.id}").decode()
        return FileInfo(row.id, name, row.purpose, row.bytes, int(row.created_at.replace(tzinfo=UTC).timestamp()),
                        self.keys.arn(row.account_id, row.kms_key_id))
