"""Provisioned throughput. On one machine it is the "keep it loaded" knob: creating one loads the model (and a
custom model's adapter) and keeps it resident, so the first invocation pays no load time; invoking by the
provisioned model's ARN serves the model behind it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import AccessService
from outcrop.core.accounts import caller_of
from outcrop.core.catalog import Resolved
from outcrop.core.customization.records import check_name, iso, new_id, page
from outcrop.core.governance import CallContext
from outcrop.core.tags import check_tags
from outcrop.errors import Invalid, NotFound
from outcrop.settings import Settings
from outcrop.storage.repositories import AccountScope, unique
from outcrop.storage.tables import ProvisionedModel

log = logging.getLogger("outcrop.customization")
COMMITMENTS = {"OneMonth": 30, "SixMonths": 182}
STATUSES = ("Creating", "InService", "Updating", "Failed")


class ProvisionedThroughput:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], access: AccessService,
                 resolve: Callable[[str, str], Resolved], warm: Callable[[Resolved], None]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.access = access
        self.resolve = resolve  # (account, model ID or ARN) → what serves it
        self.warm = warm  # load it now and keep it loaded

    def arn(self, account_id: str, pid: str) -> str:
        return f"arn:aws:bedrock:{self.settings.region}:{account_id}:provisioned-model/{pid}"

    def create(self, ctx: CallContext, body: dict[str, Any]) -> dict[str, Any]:
        account = caller_of(ctx).account_id
        pid = new_id()
        self.access.require(ctx, self.arn(account, pid))  # before anything about the request is told
        name = check_name(body.get("provisionedModelName"), "provisionedModelName")
        units = body.get("modelUnits")
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise Invalid("modelUnits must be a whole number of at least 1")
        commitment = body.get("commitmentDuration")
        if commitment is not None and commitment not in COMMITMENTS:
            raise Invalid(f"commitmentDuration must be one of {list(COMMITMENTS)}")
        model_id = body.get("modelId")
        if not isinstance(model_id, str) or not model_id:
            raise Invalid("modelId is required")
        resolved = self.resolve(account, model_id)
        model_arn = resolved.arn or f"arn:aws:bedrock:{self.settings.region}::foundation-model/{resolved.requested}"
        now = datetime.now(UTC)
        row = ProvisionedModel(id=pid, name=name, model_arn=model_arn, model_units=units, commitment=commitment,
                               status="Creating", tags=json.dumps(check_tags(body.get("tags"))), created_at=now,
                               updated_at=now)
        with unique(f"A provisioned model named {name} already exists"), self.sessions.begin() as session:
            AccountScope(session, account).add(row)
        threading.Thread(target=self._load, args=(account, pid, resolved), daemon=True).start()
        return {"provisionedModelArn": self.arn(account, pid)}

    def _load(self, account: str, pid: str, resolved: Resolved) -> None:
        status, failure = "InService", None
        try:
            self.warm(resolved)
        except Exception as exc:
            log.warning("provisioned model %s failed to load: %s", pid, exc)
            status, failure = "Failed", f"The model failed to load: {exc}"
        with self.sessions.begin() as session:
            row = AccountScope(session, account).get(ProvisionedModel, pid)
            if row is not None:
                row.status, row.failure, row.updated_at = status, failure, datetime.now(UTC)

    def get(self, ctx: CallContext, identifier: str) -> dict[str, Any]:
        return self._render(self._find(ctx, identifier))

    def list_all(self, ctx: CallContext, query: Any) -> dict[str, Any]:
        account = caller_of(ctx).account_id
        self.access.require(ctx, self.arn(account, "*"))
        with self.sessions() as session:
            rows = list(AccountScope(session, account).rows(ProvisionedModel))
        status, name, model = query.get("statusEquals"), query.get("nameContains"), query.get("modelArnEquals")
        if status is not None and status not in STATUSES:
            raise Invalid(f"statusEquals must be one of {list(STATUSES)}")
        rows = [r for r in rows if (status is None or r.status == status) and (name is None or name in r.name)
                and (model is None or r.model_arn == model)]
        order = query.get("sortOrder", "Descending")
        if order not in ("Ascending", "Descending"):
            raise Invalid("sortOrder must be Ascending or Descending")
        rows.sort(key=lambda r: r.created_at, reverse=order == "Descending")
        items, token = page(rows, query.get("maxResults"), query.get("nextToken"))
        summaries = []
        for r in items:
            full = self._render(r)
            summaries.append({k: full[k] for k in ("provisionedModelName", "provisionedModelArn", "modelArn",
                                                   "desiredModelArn", "foundationModelArn", "modelUnits",
                                                   "desiredModelUnits", "status", "creationTime",
                                                   "lastModifiedTime", "commitmentDuration",
                                                   "commitmentExpirationTime") if full.get(k) is not None})
        return {"provisionedModelSummaries": summaries, **({"nextToken": token} if token else {})}

    def update(self, ctx: CallContext, identifier: str, body: dict[str, Any]) -> None:
        row = self._find(ctx, identifier)
        new_name = body.get("desiredProvisionedModelName")
        new_model = body.get("desiredModelId")
        resolved = None
        if new_name is not None:
            check_name(new_name, "desiredProvisionedModelName")
        if new_model is not None:
            resolved = self.resolve(row.account_id, new_model)
        with unique(f"A provisioned model named {new_name} already exists"), self.sessions.begin() as session:
            stored = AccountScope(session, row.account_id).get(ProvisionedModel, row.id)
            if stored is None:
                raise NotFound(f"The provisioned model {identifier} does not exist")
            if new_name is not None:
                stored.name = new_name
            if resolved is not None:
                stored.model_arn = resolved.arn or (
                    f"arn:aws:bedrock:{self.settings.region}::foundation-model/{resolved.requested}")
                stored.status = "Updating"
            stored.updated_at = datetime.now(UTC)
        if resolved is not None:
            threading.Thread(target=self._load, args=(row.account_id, row.id, resolved), daemon=True).start()

    def delete(self, ctx: CallContext, identifier: str) -> None:
        row = self._find(ctx, identifier)
        with self.sessions.begin() as session:
            stored = AccountScope(session, row.account_id).get(ProvisionedModel, row.id)
            if stored is not None:
                AccountScope(session, row.account_id).delete(stored)

    def locate(self, ctx: CallContext, resource_arn: str) -> tuple[str, str]:
        """(account, ID) of a provisioned model ARN, for TagResource and friends (core.tags)."""
        row = self._find(ctx, resource_arn)
        return row.account_id, row.id

    def _find(self, ctx: CallContext, identifier: str) -> ProvisionedModel:
        account = caller_of(ctx).account_id
        prefix = self.arn(account, "")
        if identifier.startswith("arn:"):
            identifier = identifier[len(prefix):] if identifier.startswith(prefix) else "-"
        with self.sessions() as session:
            scope = AccountScope(session, account)
            row = scope.get(ProvisionedModel, identifier) or scope.first(ProvisionedModel,
                                                                         ProvisionedModel.name == identifier)
            if row is not None:
                session.expunge(row)
        if row is None:
            raise NotFound(f"The provisioned model {identifier} does not exist")
        self.access.require(ctx, self.arn(account, row.id))
        return row

    def _render(self, r: ProvisionedModel) -> dict[str, Any]:
        foundation = r.model_arn if ":foundation-model/" in r.model_arn else None
        out = {"provisionedModelName": r.name, "provisionedModelArn": self.arn(r.account_id, r.id),
               "modelArn": r.model_arn, "desiredModelArn": r.model_arn,
               "foundationModelArn": foundation or r.model_arn, "modelUnits": r.model_units,
               "desiredModelUnits": r.model_units, "status": r.status, "creationTime": iso(r.created_at),
               "lastModifiedTime": iso(r.updated_at)}
        if r.failure:
            out["failureMessage"] = r.failure
        if r.commitment:
            out["commitmentDuration"] = r.commitment
            out["commitmentExpirationTime"] = iso(r.created_at + timedelta(days=COMMITMENTS[r.commitment]))
        return out
