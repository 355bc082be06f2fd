"""Guardrails (bedrock's control plane), tenant-scoped: a DRAFT that changes and numbered versions that never do.

Each version's document (messages and policies: customer content) is sealed under the account's key, or
under the customer key named by kmsKeyId. The runtime asks `compiled()` for a version's compiled checks,
cached by (guardrail, version, updatedAt): numbered versions compile once, the DRAFT again after each update.
"""

from __future__ import annotations

import json
import secrets
import string
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import AccessService
from outcrop.core.accounts import caller_of
from outcrop.core.governance import CallContext
from outcrop.core.guardrails import config
from outcrop.core.kms import KeyService
from outcrop.core.tags import check_tags
from outcrop.errors import Invalid, NotFound
from outcrop.settings import Settings
from outcrop.storage.repositories import AccountScope, unique
from outcrop.storage.tables import Guardrail, GuardrailVersion

DRAFT = "DRAFT"
_ID = string.ascii_lowercase + string.digits
_CACHE = 256  # compiled versions kept in memory


def iso(when: datetime) -> str:
    return when.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


class GuardrailService:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], access: AccessService, keys: KeyService,
                 compile: Callable[[dict[str, Any]], Any]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.access = access
        self.keys = keys
        self._compile = compile
        self._compiled: OrderedDict[tuple[str, str, str], tuple[datetime, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def arn(self, account_id: str, guardrail_id: str) -> str:
        return f"arn:aws:bedrock:{self.settings.region}:{account_id}:guardrail/{guardrail_id}"

    def parse(self, ctx: CallContext, identifier: str) -> tuple[str, str]:
        """(account, guardrail id) for an ID or an ARN; an ARN of another account is simply not found."""
        account = caller_of(ctx).account_id
        if identifier.startswith("arn:"):
            prefix = f"arn:aws:bedrock:{self.settings.region}:{account}:guardrail/"
            return account, identifier[len(prefix):] if identifier.startswith(prefix) else "-"
        return account, identifier

    # -- control plane --------------------------------------------------------------------------------

    def create(self, ctx: CallContext, body: dict[str, Any]) -> dict[str, Any]:
        account = caller_of(ctx).account_id
        guardrail_id = "".join(secrets.choice(_ID) for _ in range(12))
        self.access.require(ctx, self.arn(account, guardrail_id))
        document = config.normalize(body)
        tags = check_tags(body.get("tags"))
        key = self._key(account, body.get("kmsKeyId"))
        now = datetime.now(UTC)
        head = Guardrail(id=guardrail_id, name=document["name"], latest_version=0, tags=json.dumps(tags),
                         created_at=now, updated_at=now)
        draft = self._version_row(account, guardrail_id, DRAFT, document, key, now)
        with unique(f"A guardrail named {document['name']} already exists"), self.sessions.begin() as session:
            scope = AccountScope(session, account)
            scope.add(head)
            scope.add(draft)
        return {"guardrailId": guardrail_id, "guardrailArn": self.arn(account, guardrail_id), "version": DRAFT,
                "createdAt": iso(now)}

    def update(self, ctx: CallContext, identifier: str, body: dict[str, Any]) -> dict[str, Any]:
        account, guardrail_id = self.parse(ctx, identifier)
        self.access.require(ctx, self.arn(account, guardrail_id))
        document = config.normalize(body)
        now = datetime.now(UTC)
        with unique(f"A guardrail named {document['name']} already exists"), self.sessions.begin() as session:
            scope = AccountScope(session, account)
            head = self._head(scope, guardrail_id)
            draft = scope.get(GuardrailVersion, f"{guardrail_id}:{DRAFT}")
            assert draft is not None
            key = self._key(account, body["kmsKeyId"]) if body.get("kmsKeyId") else draft.kms_key
            draft.sealed = self._seal(account, guardrail_id, DRAFT, document, key)
            draft.kms_key, draft.updated_at = key, now
            head.name, head.updated_at = document["name"], now
            session.flush()
        return {"guardrailId": guardrail_id, "guardrailArn": self.arn(account, guardrail_id), "version": DRAFT,
                "updatedAt": iso(now)}

    def create_version(self, ctx: CallContext, identifier: str, body: dict[str, Any]) -> dict[str, Any]:
        account, guardrail_id = self.parse(ctx, identifier)
        self.access.require(ctx, self.arn(account, guardrail_id))
        description = body.get("description")
        if description is not None:
            config._text(description, "description", 1, 200)
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            scope = AccountScope(session, account)
            head = self._head(scope, guardrail_id)
            draft = scope.get(GuardrailVersion, f"{guardrail_id}:{DRAFT}")
            assert draft is not None
            document = self._open(draft)
            if description is not None:
                document["description"] = description
            head.latest_version += 1
            version = str(head.latest_version)
            scope.add(self._version_row(account, guardrail_id, version, document, draft.kms_key, now))
            head.updated_at = now
        return {"guardrailId": guardrail_id, "version": version}

    def get(self, ctx: CallContext, identifier: str, version: str | None) -> dict[str, Any]:
        account, guardrail_id = self.parse(ctx, identifier)
        self.access.require(ctx, self.arn(account, guardrail_id))
        version = _version(version or DRAFT)
        with self.sessions() as session:
            scope = AccountScope(session, account)
            self._head(scope, guardrail_id)
            row = scope.get(GuardrailVersion, f"{guardrail_id}:{version}")
            if row is None:
                raise NotFound(f"Guardrail {guardrail_id} has no version {version}")
            return self._render(row, self._open(row))

    def list_guardrails(self, ctx: CallContext, identifier: str | None) -> list[dict[str, Any]]:
        """Every guardrail's DRAFT, or with an identifier every version of that guardrail."""
        account = caller_of(ctx).account_id
        with self.sessions() as session:
            scope = AccountScope(session, account)
            if identifier:
                _, guardrail_id = self.parse(ctx, identifier)
                self.access.require(ctx, self.arn(account, guardrail_id))
                self._head(scope, guardrail_id)
                rows = scope.rows(GuardrailVersion, GuardrailVersion.guardrail_id == guardrail_id)
                rows = sorted(rows, key=lambda r: (r.version != DRAFT, int(r.version) if r.version.isdigit() else 0))
            else:
                self.access.require(ctx, self.arn(account, "*"))
                rows = scope.rows(GuardrailVersion, GuardrailVersion.version == DRAFT)
            out = []
            for row in rows:
                doc = self._open(row)
                item = {"id": row.guardrail_id, "arn": self.arn(account, row.guardrail_id), "status": "READY",
                        "name": doc["name"], "version": row.version, "createdAt": iso(row.created_at),
                        "updatedAt": iso(row.updated_at)}
                if doc.get("description"):
                    item["description"] = doc["description"]
                out.append(item)
            return out

    def delete(self, ctx: CallContext, identifier: str, version: str | None) -> None:
        account, guardrail_id = self.parse(ctx, identifier)
        self.access.require(ctx, self.arn(account, guardrail_id))
        if version is not None and (version == DRAFT or not version.isdigit()):
            raise Invalid("guardrailVersion must be a numbered version; omit it to delete the whole guardrail")
        with self.sessions.begin() as session:
            scope = AccountScope(session, account)
            head = self._head(scope, guardrail_id)
            if version is not None:
                row = scope.get(GuardrailVersion, f"{guardrail_id}:{version}")
                if row is None:
                    raise NotFound(f"Guardrail {guardrail_id} has no version {version}")
                scope.delete(row)
                return
            for row in scope.rows(GuardrailVersion, GuardrailVersion.guardrail_id == guardrail_id):
                session.delete(row)
            session.flush()
            scope.delete(head)
        with self._lock:
            for key in [k for k in self._compiled if k[0] == account and k[1] == guardrail_id]:
                del self._compiled[key]

    # -- tags: TagResource and friends, through core.tags ---------------------------------------------------

    def locate(self, ctx: CallContext, resource_arn: str) -> tuple[str, str]:
        """(account, guardrail ID) of a guardrail ARN in the caller's account, IAM checked on it."""
        account, guardrail_id = self.parse(ctx, resource_arn)
        self.access.require(ctx, self.arn(account, guardrail_id))
        with self.sessions() as session:
            self._head(AccountScope(session, account), guardrail_id)
        return account, guardrail_id

    # -- runtime ----------------------------------------------------------------------------------------

    def compiled(self, ctx: CallContext, identifier: str, version: str | None) -> tuple[str, str, Any]:
        """(guardrail ID, version, compiled guardrail) after checking bedrock:ApplyGuardrail on its ARN."""
        if not isinstance(identifier, str) or not identifier:
            raise Invalid("guardrailIdentifier is required")
        account, guardrail_id = self.parse(ctx, identifier)
        self.access.require(ctx, self.arn(account, guardrail_id), "bedrock:ApplyGuardrail")
        version = _version(version or DRAFT)
        with self.sessions() as session:
            row = AccountScope(session, account).get(GuardrailVersion, f"{guardrail_id}:{version}")
            if row is None:
                raise NotFound(f"The guardrail {identifier} version {version} does not exist")
            key = (account, guardrail_id, version)
            with self._lock:
                hit = self._compiled.get(key)
                if hit is not None and hit[0] == row.updated_at:
                    self._compiled.move_to_end(key)
                    return guardrail_id, version, hit[1]
            document = self._open(row)
            stamp = row.updated_at
        compiled = self._compile(document)
        with self._lock:
            self._compiled[key] = (stamp, compiled)
            while len(self._compiled) > _CACHE:
                self._compiled.popitem(last=False)
        return guardrail_id, version, compiled

    # -- helpers ----------------------------------------------------------------------------------------

    def _head(self, scope: AccountScope, guardrail_id: str) -> Guardrail:
        head = scope.get(Guardrail, guardrail_id)
        if head is None:
            raise NotFound(f"The guardrail {guardrail_id} does not exist")
        return head

    def _key(self, account: str, key_ref: Any) -> str | None:
        if key_ref is None:
            return None
        if not isinstance(key_ref, str) or not key_ref:
            raise Invalid("kmsKeyId must be a key ID or ARN")
        return self.keys.resolve(account, key_ref)

    def _seal(self, account: str, guardrail_id: str, version: str, document: dict[str, Any], key: str | None) -> bytes:
        return self.keys.seal(account, json.dumps(document).encode(), f"guardrail:{guardrail_id}:{version}", key)

    def _open(self, row: GuardrailVersion) -> dict[str, Any]:
        opened = self.keys.open(row.account_id, row.sealed, f"guardrail:{row.guardrail_id}:{row.version}")
        return dict(json.loads(opened))

    def _version_row(self, account: str, guardrail_id: str, version: str, document: dict[str, Any],
                     key: str | None, now: datetime) -> GuardrailVersion:
        return GuardrailVersion(id=f"{guardrail_id}:{version}", guardrail_id=guardrail_id, version=version,
                                kms_key=key, sealed=self._seal(account, guardrail_id, version, document, key),
                                created_at=now, updated_at=now)

    def _render(self, row: GuardrailVersion, document: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": document["name"], "guardrailId": row.guardrail_id,
            "guardrailArn": self.arn(row.account_id, row.guardrail_id), "version": row.version, "status": "READY",
            "createdAt": iso(row.created_at), "updatedAt": iso(row.updated_at),
            "blockedInputMessaging": document["blockedInputMessaging"],
            "blockedOutputsMessaging": document["blockedOutputsMessaging"],
        }
        if document.get("description"):
            out["description"] = document["description"]
        for member in config.POLICIES:
            if member in document:
                out[member] = document[member]
        if row.kms_key:
            out["kmsKeyArn"] = f"arn:aws:kms:{self.settings.region}:{row.account_id}:key/{row.kms_key}"
        return out



def _version(version: str) -> str:
    if version != DRAFT and not (version.isdigit() and not version.startswith("0") and len(version) <= 8):
        raise Invalid(f"guardrailVersion must be DRAFT or a version number, not {version!r}")
    return version
