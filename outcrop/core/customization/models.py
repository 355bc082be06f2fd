"""Custom models (a LoRA adapter on a catalog base model) and imported models (a user's own weights): their
records, their sealed weights, and how an invocation finds the engine and adapter that serve them.

Weights are customer content: each file is sealed (AES-GCM under the account's key, or the customer key given)
in the blob store. To serve one, it is opened into an anonymous in-memory file (memfd) that llama.cpp reads by
path; the plaintext never touches the disk. Many custom models share one loaded base model: the adapter is
chosen per request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import AccessService
from outcrop.core.accounts import caller_of
from outcrop.core.catalog import Catalog, Resolved
from outcrop.core.customization.memfile import MemoryFile
from outcrop.core.customization.records import iso, lookup, page
from outcrop.core.governance import CallContext
from outcrop.core.kms import KeyService
from outcrop.core.tags import Locate
from outcrop.errors import Conflict, Invalid, NotFound
from outcrop.settings import Settings
from outcrop.storage.blobs import BlobStore
from outcrop.storage.repositories import AccountScope
from outcrop.storage.tables import CustomModel, ProvisionedModel
from outcrop.types import Adapter, ModelSpec

RESOURCE = {"custom": "custom-model", "imported": "imported-model"}


class CustomModels:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], access: AccessService, keys: KeyService,
                 blobs: BlobStore, catalog: Catalog) -> None:
        self.settings = settings
        self.sessions = sessions
        self.access = access
        self.keys = keys
        self.blobs = blobs
        self.catalog = catalog
        self._open: dict[str, MemoryFile] = {}  # "<account>/<blob>" → the opened weights, while in use
        self._lock = threading.Lock()
        self.on_delete: list[Callable[[str], None]] = []  # told a model ID that is gone (engines unload it)

    def arn(self, account_id: str, kind: str, model_id: str) -> str:
        return f"arn:aws:bedrock:{self.settings.region}:{account_id}:{RESOURCE[kind]}/{model_id}"

    # -- records --------------------------------------------------------------------------------------

    def pending(self, model_id: str, kind: str, name: str, base_model_id: str | None, job_id: str,
                details: dict[str, Any], account: str, key: str | None, tags: list[dict[str, str]]) -> CustomModel:
        """The row a job creates with itself (status Creating), activated or failed when the job ends."""
        now = datetime.now(UTC)
        return CustomModel(id=model_id, account_id=account, kind=kind, name=name, base_model_id=base_model_id,
                           job_id=job_id, status="Creating", kms_key=key, tags=json.dumps(tags), blobs="{}",
                           sealed=self._seal(account, model_id, details, key), created_at=now, updated_at=now)

    def activate(self, account: str, model_id: str, files: dict[str, bytes], serving: str,
                 architecture: str | None = None, details: dict[str, Any] | None = None) -> None:
        """Seal and store the weights, then mark the model Active (in that order: a crash leaves it Creating)."""
        key = self._key(account, model_id)
        stored = {}
        for role, data in files.items():
            blob = f"model-{model_id}-{role}"
            self.blobs.put(account, blob, self.keys.seal(account, data, f"model:{model_id}:{role}", key))
            stored[role] = blob
        with self.sessions.begin() as session:
            row = AccountScope(session, account).get(CustomModel, model_id)
            if row is None:  # deleted while its job ran
                for blob in stored.values():
                    self.blobs.delete(account, blob)
                return
            if details is not None:
                row.sealed = self._seal(account, model_id, {**self._details(row), **details}, row.kms_key)
            row.blobs, row.status, row.serving, row.architecture = json.dumps(stored), "Active", serving, architecture
            row.updated_at = datetime.now(UTC)

    # -- a training job's checkpoint, sealed like the model it becomes -------------------------------------

    def save_checkpoint(self, account: str, model_id: str, data: bytes) -> None:
        sealed = self.keys.seal(account, data, f"model:{model_id}:checkpoint", self._key(account, model_id))
        self.blobs.put(account, f"model-{model_id}-checkpoint", sealed)

    def load_checkpoint(self, account: str, model_id: str) -> bytes | None:
        try:
            sealed = self.blobs.get(account, f"model-{model_id}-checkpoint")
        except FileNotFoundError:
            return None
        return self.keys.open(account, sealed, f"model:{model_id}:checkpoint")

    def drop_checkpoint(self, account: str, model_id: str) -> None:
        self.blobs.delete(account, f"model-{model_id}-checkpoint")

    def _key(self, account: str, model_id: str) -> str | None:
        with self.sessions() as session:
            row = AccountScope(session, account).get(CustomModel, model_id)
            if row is None:
                raise NotFound(f"The model {model_id} does not exist")
            return row.kms_key

    def fail(self, account: str, model_id: str, message: str) -> None:
        with self.sessions.begin() as session:
            row = AccountScope(session, account).get(CustomModel, model_id)
            if row is not None:
                row.sealed = self._seal(account, model_id, {**self._details(row), "failureMessage": message},
                                        row.kms_key)
                row.status, row.updated_at = "Failed", datetime.now(UTC)

    def discard(self, account: str, model_id: str) -> None:
        """Drop a model that was never made (its job was stopped)."""
        with self.sessions.begin() as session:
            scope = AccountScope(session, account)
            row = scope.get(CustomModel, model_id)
            if row is not None and row.status == "Creating":
                scope.delete(row)

    def update_details(self, account: str, model_id: str, **details: Any) -> None:
        with self.sessions.begin() as session:
            row = AccountScope(session, account).get(CustomModel, model_id)
            if row is not None:
                row.sealed = self._seal(account, model_id, {**self._details(row), **details}, row.kms_key)

    # -- the API --------------------------------------------------------------------------------------

    def find(self, ctx: CallContext, kind: str, identifier: str) -> CustomModel:
        account = caller_of(ctx).account_id
        row = self._lookup(account, kind, identifier)
        if row is None:
            raise NotFound(f"The model {identifier} does not exist")
        self.access.require(ctx, self.arn(account, kind, row.id))
        return row

    def locator(self, kind: str) -> Locate:
        """Finds a model of this kind by ARN for TagResource and friends (core.tags)."""

        def locate(ctx: CallContext, resource_arn: str) -> tuple[str, str]:
            row = self.find(ctx, kind, resource_arn)
            return row.account_id, row.id

        return locate

    def describe(self, row: CustomModel) -> dict[str, Any]:
        """GetCustomModel's / GetImportedModel's body."""
        details = self._details(row)
        arn = self.arn(row.account_id, row.kind, row.id)
        key = {"modelKmsKeyArn": self.keys.arn(row.account_id, row.kms_key)} if row.kms_key else {}
        if row.kind == "imported":
            return {"modelArn": arn, "modelName": row.name, "jobName": details.get("jobName"),
                    "jobArn": details.get("jobArn"), "modelDataSource": details.get("modelDataSource"),
                    "creationTime": iso(row.created_at), "modelArchitecture": row.architecture,
                    "instructSupported": bool(details.get("instructSupported")), **key,
                    "customModelUnits": {"customModelUnitsPerModelCopy": 1, "customModelUnitsVersion": "1.0"},
                    **({"servingEngine": row.serving} if row.serving else {})}
        out = {"modelArn": arn, "modelName": row.name, "jobName": details.get("jobName"),
               "jobArn": details.get("jobArn"), "baseModelArn": self._base_arn(row),
               "customizationType": details.get("customizationType"), **key,
               "hyperParameters": details.get("hyperParameters") or {},
               "trainingDataConfig": details.get("trainingDataConfig") or {},
               "outputDataConfig": details.get("outputDataConfig") or {},
               "creationTime": iso(row.created_at), "modelStatus": row.status}
        for name in ("validationDataConfig", "trainingMetrics", "validationMetrics", "failureMessage"):
            if details.get(name) is not None:
                out[name] = details[name]
        if row.serving:
            out["servingEngine"] = row.serving  # llamacpp-lora, or transformers-peft where conversion failed
            if details.get("servingNote"):
                out["servingNote"] = details["servingNote"]
        return out

    def summaries(self, ctx: CallContext, kind: str, query: Any) -> dict[str, Any]:
        account = caller_of(ctx).account_id
        self.access.require(ctx, self.arn(account, kind, "*"))
        with self.sessions() as session:
            rows = list(AccountScope(session, account).rows(CustomModel, CustomModel.kind == kind))
        name = query.get("nameContains")
        base = query.get("baseModelArnEquals") or query.get("foundationModelArnEquals")
        status = query.get("modelStatus")
        if status is not None and status not in ("Active", "Creating", "Failed"):
            raise Invalid("modelStatus must be Active, Creating or Failed")
        rows = [r for r in rows if (name is None or name in r.name) and (status is None or r.status == status)
                and (base is None or self._base_arn(r) == base)]
        order = query.get("sortOrder", "Descending")
        if order not in ("Ascending", "Descending") or query.get("sortBy", "CreationTime") != "CreationTime":
            raise Invalid("sortBy must be CreationTime and sortOrder Ascending or Descending")
        rows.sort(key=lambda r: r.created_at, reverse=order == "Descending")
        items, token = page(rows, query.get("maxResults"), query.get("nextToken"))
        if kind == "imported":
            listed = [{"modelArn": self.arn(account, kind, r.id), "modelName": r.name,
                       "creationTime": iso(r.created_at), "modelArchitecture": r.architecture,
                       "instructSupported": bool(self._details(r).get("instructSupported"))} for r in items]
        else:
            listed = [{"modelArn": self.arn(account, kind, r.id), "modelName": r.name,
                       "creationTime": iso(r.created_at), "baseModelArn": self._base_arn(r),
                       "baseModelName": r.base_model_id or "", "ownerAccountId": account, "modelStatus": r.status,
                       "customizationType": self._details(r).get("customizationType")} for r in items]
        return {"modelSummaries": listed, **({"nextToken": token} if token else {})}

    def delete(self, ctx: CallContext, kind: str, identifier: str) -> None:
        row = self.find(ctx, kind, identifier)
        arn = self.arn(row.account_id, kind, row.id)
        with self.sessions.begin() as session:
            scope = AccountScope(session, row.account_id)
            if scope.first(ProvisionedModel, ProvisionedModel.model_arn == arn) is not None:
                raise Conflict(f"The model {row.name} has provisioned throughput; delete that first")
            if row.status == "Creating":
                raise Conflict(f"The model {row.name} is still being created; stop its job first")
            stored = scope.get(CustomModel, row.id)
            if stored is not None:
                scope.delete(stored)
        for blob in json.loads(row.blobs).values():
            self.blobs.delete(row.account_id, blob)
            with self._lock:
                opened = self._open.pop(f"{row.account_id}/{blob}", None)
            if opened is not None:
                opened.close()
        for listener in self.on_delete:
            listener(row.id)

    # -- serving --------------------------------------------------------------------------------------

    def resolve(self, account_id: str, model_id: str) -> Resolved:
        """The engine spec (and adapter) that serve a private model named by ARN or name."""
        kind = "imported" if ":imported-model/" in model_id else "custom"
        if ":provisioned-model/" in model_id:
            return self._provisioned(account_id, model_id)
        row = self._lookup(account_id, kind, model_id)
        if row is None and not model_id.startswith("arn:"):
            row = self._lookup(account_id, "imported", model_id)
        if row is None:
            raise NotFound(f"The provided model identifier is invalid: {model_id}. Use ListFoundationModels, "
                           "ListCustomModels or ListImportedModels to see the models you can invoke.")
        if row.status != "Active":
            raise Invalid(f"The model {row.name} is {row.status}, not Active; it cannot be invoked yet")
        arn = self.arn(account_id, row.kind, row.id)
        files = json.loads(row.blobs)
        if row.kind == "custom":
            base = self.catalog.resolve(row.base_model_id or "")
            if row.serving == "llamacpp-lora":
                adapter = Adapter(f"{row.id}:{int(row.updated_at.replace(tzinfo=UTC).timestamp())}",
                                  self._opened(row, "gguf-lora", files).path)
                return Resolved(base.spec.model_id, base.spec, arn=arn, adapter=adapter)
            spec = ModelSpec(f"custom/{row.id}", row.name, "Custom", "transformers",
                             path=str(self._hf_base_dir(base.spec)),
                             options={"adapter_path": self._opened(row, "peft", files).path})
            return Resolved(base.spec.model_id, spec, arn=arn)
        engine = "llamacpp" if row.serving == "llamacpp" else "transformers"
        spec = ModelSpec(f"imported/{row.id}", row.name, "Imported", engine,
                         path=self._opened(row, "weights", files).path, context_length=None)
        return Resolved(spec.model_id, spec, arn=arn)

    def _provisioned(self, account_id: str, arn: str) -> Resolved:
        pid = arn.rsplit("/", 1)[-1]
        with self.sessions() as session:
            row = AccountScope(session, account_id).get(ProvisionedModel, pid)
        if row is None:
            raise NotFound(f"The provisioned model {arn} does not exist")
        inner = self.resolve(account_id, row.model_arn) if row.model_arn.startswith("arn:") and (
            ":custom-model/" in row.model_arn or ":imported-model/" in row.model_arn) \
            else self.catalog.resolve(row.model_arn)
        return Resolved(inner.requested, inner.spec, arn=arn, adapter=inner.adapter)

    def _opened(self, row: CustomModel, role: str, files: dict[str, str]) -> MemoryFile:
        blob = files.get(role)
        if blob is None:
            raise Invalid(f"The model {row.name} has no {role} weights")
        name = f"{row.account_id}/{blob}"
        with self._lock:
            opened = self._open.get(name)
            if opened is None:
                data = self.keys.open(row.account_id, self.blobs.get(row.account_id, blob), f"model:{row.id}:{role}")
                scratch = self.settings.home / "tmp"
                scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
                opened = self._open[name] = MemoryFile(data, scratch, name=f"model-{row.id}-{role}")
            return opened

    def _hf_base_dir(self, spec: ModelSpec) -> Any:
        from outcrop import modelpacks
        from outcrop.core.customization.hf_base import converted_base_dir

        path = modelpacks.pack_path(modelpacks.PACKS[spec.pack], self.settings.model_cache) if spec.pack else spec.path
        return converted_base_dir(str(path), self.settings.model_cache / "hf")

    def _lookup(self, account: str, kind: str, identifier: str) -> CustomModel | None:
        prefix = f"arn:aws:bedrock:{self.settings.region}:{account}:{RESOURCE[kind]}/"
        with self.sessions() as session:
            row = lookup(AccountScope(session, account), CustomModel, kind, identifier, prefix)
            if row is not None:
                session.expunge(row)
        return row

    def _base_arn(self, row: CustomModel) -> str:
        return f"arn:aws:bedrock:{self.settings.region}::foundation-model/{row.base_model_id}"

    def _details(self, row: CustomModel) -> dict[str, Any]:
        return dict(json.loads(self.keys.open(row.account_id, row.sealed, f"model-details:{row.id}")))

    def _seal(self, account: str, model_id: str, details: dict[str, Any], key: str | None) -> bytes:
        return self.keys.seal(account, json.dumps(details).encode(), f"model-details:{model_id}", key)

    def close(self) -> None:
        with self._lock:
            for opened in self._open.values():
                opened.close()
            self._open.clear()

