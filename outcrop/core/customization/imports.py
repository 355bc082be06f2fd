"""CreateModelImportJob: a user's own weights — a GGUF file, or a Hugging Face folder of safetensors — become an
invocable model. GGUF files are served by llama.cpp, HF folders by transformers. The weights are copied into the
service sealed (customer content), so the source may change or vanish afterwards.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from typing import Any

from outcrop.core.customization.memfile import MemoryFile
from outcrop.core.customization.models import CustomModels
from outcrop.core.customization.records import ModelJobs, check_name, filtered, iso, new_id, page
from outcrop.core.governance import CallContext
from outcrop.core.jobs import JobRun
from outcrop.core.objects import Location, ObjectStore, parse_uri
from outcrop.core.tags import check_tags
from outcrop.errors import Conflict, Invalid, OutcropError
from outcrop.settings import Settings

KIND = "import"
STATUS = {"queued": "InProgress", "running": "InProgress", "stopping": "InProgress", "stopped": "Failed",
          "completed": "Completed", "failed": "Failed"}
HF_FILES = (".json", ".safetensors", ".txt", ".model", ".jinja")


class ModelImports:
    def __init__(self, settings: Settings, records: ModelJobs, models: CustomModels, objects: Callable[[str], ObjectStore]) -> None:
        self.settings = settings
        self.records = records
        self.models = models
        self.objects = objects  # account ID -> ObjectStore

    def create(self, ctx: CallContext, body: dict[str, Any]) -> dict[str, Any]:
        account, job_id, retried = self.records.opening(ctx, KIND, body.get("clientRequestToken"))
        model_id = new_id()
        if retried is not None:
            return {"jobArn": self.records.arn(account, KIND, retried.row.id)}
        job_name = check_name(body.get("jobName"), "jobName")
        model_name = check_name(body.get("importedModelName"), "importedModelName")
        if not isinstance(body.get("roleArn"), str):
            raise Invalid("roleArn is required")
        source = ((body.get("modelDataSource") or {}).get("s3DataSource") or {}).get("s3Uri")
        where = parse_uri(self.settings, source, "modelDataSource.s3DataSource.s3Uri")
        self._files(self.objects(account), where)  # fail fast: nothing importable there
        if self.models._lookup(account, "imported", model_name) is not None:
            raise Conflict(f"An imported model named {model_name} already exists")
        key_ref = body.get("importedModelKmsKeyId")
        key = self.records.keys.resolve(account, key_ref) if key_ref else None
        request = {"jobName": job_name, "importedModelName": model_name, "roleArn": body["roleArn"],
                   "modelDataSource": {"s3DataSource": {"s3Uri": source}}}
        details = {"jobName": job_name, "jobArn": self.records.arn(account, KIND, job_id),
                   "modelDataSource": request["modelDataSource"]}
        pending = self.models.pending(model_id, "imported", model_name, None, job_id, details, account, key,
                                      check_tags(body.get("importedModelTags"), "importedModelTags"))
        record = self.records.create(ctx, KIND, job_id, job_name, where.uri, request, kms_key_ref=key_ref,
                                     tags=check_tags(body.get("jobTags"), "jobTags"),
                                     client_token=body.get("clientRequestToken"), output_model=model_id,
                                     also=(pending,))
        return {"jobArn": self.records.arn(account, KIND, record.row.id)}

    def get(self, ctx: CallContext, identifier: str) -> dict[str, Any]:
        r = self.records.find(ctx, KIND, identifier)
        req = r.request
        out = {"jobArn": self.records.arn(r.row.account_id, KIND, r.row.id), "jobName": r.row.name,
               "importedModelName": req["importedModelName"], "roleArn": req["roleArn"],
               "modelDataSource": req["modelDataSource"], "status": STATUS[r.job.status],
               "creationTime": iso(r.row.created_at), "lastModifiedTime": iso(r.job.updated_at)}
        if r.row.ended_at:
            out["endTime"] = iso(r.row.ended_at)
        if r.job.failure:
            out["failureMessage"] = r.job.failure
        if r.job.status == "completed" and r.row.output_model:
            out["importedModelArn"] = self.models.arn(r.row.account_id, "imported", r.row.output_model)
        if r.row.kms_key:
            out["importedModelKmsKeyArn"] = self.records.keys.arn(r.row.account_id, r.row.kms_key)
        return out

    def list_jobs(self, ctx: CallContext, query: Any) -> dict[str, Any]:
        rows = filtered(self.records.list_jobs(ctx, KIND), query, STATUS)
        items, token = page(rows, query.get("maxResults"), query.get("nextToken"))
        summaries = []
        for r in items:
            summary = {"jobArn": self.records.arn(r.row.account_id, KIND, r.row.id), "jobName": r.row.name,
                       "status": STATUS[r.job.status], "creationTime": iso(r.row.created_at),
                       "lastModifiedTime": iso(r.job.updated_at), "endTime": iso(r.row.ended_at)}
            if r.job.status == "completed" and r.row.output_model:
                summary["importedModelArn"] = self.models.arn(r.row.account_id, "imported", r.row.output_model)
            summaries.append({k: v for k, v in summary.items() if v is not None})
        return {"modelImportJobSummaries": summaries, **({"nextToken": token} if token else {})}

    # -- the worker -----------------------------------------------------------------------------------

    def run(self, run: JobRun) -> None:
        record = self.records.load(run.account_id, run.id)
        model_id = record.row.output_model or ""
        try:
            store: ObjectStore = self.objects(run.account_id)
            source = parse_uri(self.settings, record.row.model_id, "modelDataSource.s3DataSource.s3Uri")
            kind, files = self._files(store, source)
            run.check()
            if kind == "gguf":
                data = store.read(files[0])
                architecture, instruct = _gguf_facts(data)
                weights, serving = data, "llamacpp"
            else:
                weights, (architecture, instruct) = _tar(store, source, files), _hf_facts(store, files)
                serving = "transformers"
            run.check()
            self.models.activate(run.account_id, model_id, {"weights": weights}, serving, architecture,
                                 details={"instructSupported": instruct})
        except Exception as exc:
            message = exc.message if isinstance(exc, OutcropError) else f"internal error: {type(exc).__name__}: {exc}"
            self.models.fail(run.account_id, model_id, message)
            self.records.ended(run.account_id, run.id)
            raise
        self.records.ended(run.account_id, run.id)

    def _files(self, store: ObjectStore, where: Location) -> tuple[str, list[Location]]:
        found = store.list(where)
        ggufs = [f for f in found if f.key.endswith(".gguf")]
        if len(ggufs) == 1:
            return "gguf", ggufs
        if len(ggufs) > 1:
            raise Invalid(f"{where.uri} holds {len(ggufs)} GGUF files; name the one to import")
        names = {f.key.rsplit("/", 1)[-1] for f in found}
        if "config.json" in names and any(n.endswith(".safetensors") for n in names):
            return "hf", [f for f in found if f.key.endswith(HF_FILES)]
        raise Invalid(f"{where.uri} holds neither a GGUF file nor a Hugging Face folder (config.json and "
                      "*.safetensors); nothing to import")


def _gguf_facts(data: bytes) -> tuple[str, bool]:
    """The architecture and whether a chat template ships, read from the GGUF header."""
    if data[:4] != b"GGUF":
        raise Invalid("the file is not a GGUF model (bad magic number)")
    from gguf import GGUFReader

    with MemoryFile(data) as memory:
        try:
            reader = GGUFReader(memory.path)
        except Exception as exc:
            raise Invalid(f"the GGUF file cannot be read: {exc}") from exc
        fields = reader.fields
        arch_field = fields.get("general.architecture")
        architecture = arch_field.contents() if arch_field is not None else "unknown"
        return str(architecture), "tokenizer.chat_template" in fields


def _hf_facts(store: ObjectStore, files: list[Location]) -> tuple[str, bool]:
    config = next(f for f in files if f.key.endswith("/config.json") or f.key == "config.json")
    try:
        parsed = json.loads(store.read(config))
    except ValueError as exc:
        raise Invalid(f"{config.uri} is not valid JSON: {exc}") from exc
    architecture = (parsed.get("architectures") or [parsed.get("model_type", "unknown")])[0]
    instruct = False
    for f in files:
        if f.key.endswith("tokenizer_config.json"):
            instruct = "chat_template" in json.loads(store.read(f))
        if f.key.endswith("chat_template.jinja"):
            instruct = True
    return str(architecture), instruct


def _tar(store: ObjectStore, source: Location, files: list[Location]) -> bytes:
    buffer = io.BytesIO()
    base = source.key.rstrip("/")
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for f in files:
            data = store.read(f)
            name = f.key[len(base):].lstrip("/") if f.key.startswith(base) else f.key.rsplit("/", 1)[-1]
            info = tarfile.TarInfo(name or f.key.rsplit("/", 1)[-1])
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
