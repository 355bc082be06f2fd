"""The Bedrock-facing records of model jobs — customization, import, batch inference, async invoke — on top of the
generic job table (outcrop.core.jobs): names, ARNs, sealed requests, idempotency tokens, listing and stopping.

Each ModelJob row shares its ID with a Job row, which the worker drives through queued → running → completed |
failed | stopping → stopped; each kind maps those to Bedrock's own status words.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import AccessService
from outcrop.core.accounts import caller_of
from outcrop.core.governance import CallContext
from outcrop.core.jobs import JobService
from outcrop.core.kms import KeyService
from outcrop.core.tags import Locate
from outcrop.errors import Conflict, Invalid, NotFound
from outcrop.settings import Settings
from outcrop.storage.repositories import AccountScope, unique
from outcrop.storage.tables import CustomModel, Job, ModelJob

RESOURCE = {"customization": "model-customization-job", "import": "model-import-job",
            "batch": "model-invocation-job", "async": "async-invoke"}
_ID_ALPHABET = string.ascii_lowercase + string.digits
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9+\-.])*$")


def new_id() -> str:
    """12 lower-case alphanumerics, like Bedrock's job and model IDs."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def check_name(value: Any, field: str, limit: int = 63) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not _NAME.match(value):
        raise Invalid(f"{field} must be 1-{limit} letters, digits, hyphens, dots or plus signs, "
                      f"starting with a letter or digit; got {value!r}")
    return value


Named = TypeVar("Named", ModelJob, CustomModel)


def lookup(scope: AccountScope, table: type[Named], kind: str, identifier: str, arn_prefix: str) -> Named | None:
    """A row of `table` of this kind by its ID, its ARN (one under `arn_prefix`) or its name."""
    if identifier.startswith("arn:"):
        identifier = identifier[len(arn_prefix):] if identifier.startswith(arn_prefix) else "-"
    row = scope.get(table, identifier)
    if row is None or row.kind != kind:
        row = scope.first(table, table.kind == kind, table.name == identifier)
    return row


@dataclass
class JobRecord:
    """A model job as its APIs describe it: the resource row, the worker's row, and the opened request."""

    row: ModelJob
    job: Job
    request: dict[str, Any]

    @property
    def progress(self) -> dict[str, Any]:
        return dict(json.loads(self.job.progress or "{}"))


class ModelJobs:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], access: AccessService,
                 keys: KeyService, jobs: JobService) -> None:
        self.settings = settings
        self.sessions = sessions
        self.access = access
        self.keys = keys
        self.jobs = jobs

    def arn(self, account_id: str, kind: str, job_id: str) -> str:
        return f"arn:aws:bedrock:{self.settings.region}:{account_id}:{RESOURCE[kind]}/{job_id}"

    def opening(self, ctx: CallContext, kind: str, client_token: Any) -> tuple[str, str, JobRecord | None]:
        """What every create does first: (account, a new job ID, the job an earlier request with this
        clientRequestToken made). IAM is checked on the new job's ARN before anything of the request is read."""
        account = caller_of(ctx).account_id
        job_id = new_id()
        self.access.require(ctx, self.arn(account, kind, job_id))
        return account, job_id, self.by_token(account, kind, client_token)

    def create(self, ctx: CallContext, kind: str, job_id: str, name: str, model_id: str, request: dict[str, Any], *,
               kms_key_ref: Any = None, tags: list[dict[str, str]] | None = None, client_token: Any = None,
               output_model: str | None = None, also: Sequence[Any] = ()) -> JobRecord:
        """Queue the job `opening()` named and write its record (and `also` rows) at once. A repeated
        clientRequestToken returns the job it created the first time, as Bedrock does; a name in use is a
        ConflictException."""
        account = caller_of(ctx).account_id
        # Looked up again: a client's retry tends to arrive while its first request is still being validated.
        earlier = self.by_token(account, kind, client_token)
        if earlier is not None:
            return earlier
        key = None
        if kms_key_ref is not None:
            if not isinstance(kms_key_ref, str) or not kms_key_ref:
                raise Invalid("the KMS key must be a key ID or ARN")
            key = self.keys.resolve(account, kms_key_ref)
            self.keys.require_use(ctx, account, key, "kms:GenerateDataKey")
        row = ModelJob(id=job_id, kind=kind, name=name, model_id=model_id, output_model=output_model,
                       client_token=client_token, kms_key=key, tags=json.dumps(tags or []),
                       sealed=self._seal(account, job_id, request, key), created_at=datetime.now(UTC))
        with unique(f"A {RESOURCE[kind].replace('-', ' ')} named {name} already exists"):
            self.jobs.submit(account, kind, job_id, description=name, job_id=job_id, also=(row, *also))
        return self._record(account, job_id)

    def by_token(self, account: str, kind: str, client_token: Any) -> JobRecord | None:
        """The job an earlier request with this clientRequestToken made, if any (a retry returns it)."""
        if client_token is None:
            return None
        if not isinstance(client_token, str) or not 1 <= len(client_token) <= 256:
            raise Invalid("clientRequestToken must be 1-256 characters")
        with self.sessions() as session:
            earlier = AccountScope(session, account).first(ModelJob, ModelJob.kind == kind,
                                                          ModelJob.client_token == client_token)
        return None if earlier is None else self._record(account, earlier.id)

    def find(self, ctx: CallContext, kind: str, identifier: str) -> JobRecord:
        """A job by ID, ARN or name, in the caller's account; IAM is checked on its ARN."""
        account = caller_of(ctx).account_id
        prefix = f"arn:aws:bedrock:{self.settings.region}:{account}:{RESOURCE[kind]}/"
        with self.sessions() as session:
            row = lookup(AccountScope(session, account), ModelJob, kind, identifier, prefix)
        if row is None:
            raise NotFound(f"The {RESOURCE[kind].replace('-', ' ')} {identifier} does not exist")
        self.access.require(ctx, self.arn(account, kind, row.id))
        return self._record(account, row.id)

    def locator(self, kind: str) -> Locate:
        """Finds a job of this kind by ARN for TagResource and friends (core.tags)."""

        def locate(ctx: CallContext, resource_arn: str) -> tuple[str, str]:
            found = self.find(ctx, kind, resource_arn)
            return found.row.account_id, found.row.id

        return locate

    def list_jobs(self, ctx: CallContext, kind: str) -> list[JobRecord]:
        """Every job of a kind in the caller's account, oldest first (callers filter, sort and page)."""
        account = caller_of(ctx).account_id
        self.access.require(ctx, self.arn(account, kind, "*"))
        with self.sessions() as session:
            rows = AccountScope(session, account).rows(ModelJob, ModelJob.kind == kind)
            jobs = {j.id: j for j in AccountScope(session, account).rows(Job, Job.id.in_([r.id for r in rows]))}
            for item in (*rows, *jobs.values()):
                session.expunge(item)
        return [JobRecord(r, jobs[r.id], {}) for r in rows if r.id in jobs]

    def stop(self, ctx: CallContext, kind: str, identifier: str) -> JobRecord:
        record = self.find(ctx, kind, identifier)
        if record.job.status not in ("queued", "running"):
            raise Conflict(f"The job {record.row.name} is {record.job.status}; only a job in progress can be stopped")
        self.jobs.stop(record.row.account_id, record.row.id, kind)
        return self._record(record.row.account_id, record.row.id)

    def load(self, account_id: str, job_id: str) -> JobRecord:
        """For the worker: the record with its request opened."""
        return self._record(account_id, job_id)

    def ended(self, account_id: str, job_id: str, **values: Any) -> None:
        """Stamp the end time (and any other columns) once the worker is done with a job."""
        with self.sessions.begin() as session:
            session.execute(update(ModelJob).where(ModelJob.id == job_id, ModelJob.account_id == account_id)
                            .values(ended_at=datetime.now(UTC), **values))

    def _record(self, account_id: str, job_id: str) -> JobRecord:
        with self.sessions() as session:
            scope = AccountScope(session, account_id)
            row, job = scope.get(ModelJob, job_id), scope.get(Job, job_id)
            if row is None or job is None:
                raise NotFound(f"The job {job_id} does not exist")
            session.expunge(row)
            session.expunge(job)
        opened = self.keys.open(account_id, row.sealed, f"model-job:{job_id}")
        return JobRecord(row, job, json.loads(opened))

    def _seal(self, account: str, job_id: str, request: dict[str, Any], key: str | None) -> bytes:
        return self.keys.seal(account, json.dumps(request).encode(), f"model-job:{job_id}", key)


def page(items: list[Any], max_results: Any, next_token: Any) -> tuple[list[Any], str | None]:
    """maxResults / nextToken paging over an ordered list; the token is the next offset."""
    try:
        limit = 100 if max_results in (None, "") else int(max_results)
        start = 0 if next_token in (None, "") else int(next_token)
    except (TypeError, ValueError):
        raise Invalid("maxResults must be a number, and nextToken one this API returned") from None
    if not 1 <= limit <= 1000 or start < 0:
        raise Invalid("maxResults must be between 1 and 1000, and nextToken one this API returned")
    return items[start:start + limit], (str(start + limit) if start + limit < len(items) else None)


def filtered(records: list[JobRecord], query: Any, statuses: dict[str, str], time_field: str = "creationTime",
             ) -> list[JobRecord]:
    """Bedrock's list filters (statusEquals, nameContains, <time>After/Before) and sort (sortBy, sortOrder)."""
    prefix = "submitTime" if time_field == "submitTime" else "creationTime"
    status = query.get("statusEquals")
    if status is not None and status not in set(statuses.values()):
        raise Invalid(f"statusEquals must be one of {sorted(set(statuses.values()))}")
    name = query.get("nameContains")
    after, before = _when(query.get(prefix + "After"), prefix + "After"), _when(query.get(prefix + "Before"),
                                                                              prefix + "Before")
    out = [r for r in records
           if (status is None or statuses[r.job.status] == status)
           and (name is None or name in r.row.name)
           and (after is None or r.row.created_at.replace(tzinfo=UTC) > after)
           and (before is None or r.row.created_at.replace(tzinfo=UTC) < before)]
    order = query.get("sortOrder", "Descending")
    if order not in ("Ascending", "Descending"):
        raise Invalid("sortOrder must be Ascending or Descending")
    sort_by = query.get("sortBy", "CreationTime")
    if sort_by not in ("CreationTime", "SubmissionTime"):
        raise Invalid("sortBy must be CreationTime")
    return sorted(out, key=lambda r: r.row.created_at, reverse=order == "Descending")


def _when(value: Any, field: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        if isinstance(value, str) and value.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), UTC)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        raise Invalid(f"{field} must be a timestamp") from None
