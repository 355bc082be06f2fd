"""CreateModelCustomizationJob: private LoRA fine-tuning (FINE_TUNING) and continued pre-training on the local
base models, as jobs. The data is read where the caller keeps it (s3://, an allowlisted file://, or an upload),
checked before the job is accepted (a bad line is a ValidationException naming it), trained on with transformers
+ peft, and the adapter — converted to a GGUF LoRA so llama.cpp serves it on the shared base model — is sealed
under the account's key. Metrics files go to the output location as Bedrock writes them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from outcrop import modelpacks
from outcrop.core.catalog import Catalog
from outcrop.core.customization import datasets
from outcrop.core.customization.models import CustomModels
from outcrop.core.customization.records import (
    JobRecord,
    ModelJobs,
    check_name,
    filtered,
    iso,
    new_id,
    page,
)
from outcrop.core.governance import CallContext
from outcrop.core.jobs import JobRun, Stopped
from outcrop.core.objects import Location, ObjectStore, parse_uri
from outcrop.core.tags import check_tags
from outcrop.engines.openmp import on_own_thread
from outcrop.errors import Conflict, Invalid, NotFound, OutcropError
from outcrop.settings import Settings
from outcrop.types import ModelSpec

log = logging.getLogger("outcrop.customization")

KIND = "customization"
TYPES = ("FINE_TUNING", "CONTINUED_PRE_TRAINING")
STATUS = {"queued": "InProgress", "running": "InProgress", "stopping": "Stopping", "stopped": "Stopped",
          "completed": "Completed", "failed": "Failed"}


class CustomizationJobs:
    def __init__(self, settings: Settings, catalog: Catalog, records: ModelJobs, models: CustomModels,
                 objects: Callable[[str], ObjectStore]) -> None:
        self.settings = settings
        self.catalog = catalog
        self.records = records
        self.models = models
        self.objects = objects  # account ID -> ObjectStore
        self.on_model: list[Any] = []  # told (account, model id) when a custom model becomes Active

    # -- the API --------------------------------------------------------------------------------------

    def create(self, ctx: CallContext, body: dict[str, Any]) -> dict[str, Any]:
        account, job_id, retried = self.records.opening(ctx, KIND, body.get("clientRequestToken"))
        model_id = new_id()
        if retried is not None:
            return {"jobArn": self.records.arn(account, KIND, retried.row.id)}
        job_name = check_name(body.get("jobName"), "jobName")
        model_name = check_name(body.get("customModelName"), "customModelName")
        if not isinstance(body.get("roleArn"), str):
            raise Invalid("roleArn is required")
        kind = body.get("customizationType", "FINE_TUNING")
        if kind not in TYPES:
            raise Invalid(f"customizationType {kind} is not supported by Outcrop; use one of {list(TYPES)}")
        base = self._base(body.get("baseModelIdentifier"), kind)
        if (body.get("trainingDataConfig") or {}).get("invocationLogsConfig"):
            raise Invalid("trainingDataConfig.invocationLogsConfig is not supported; give an s3Uri")
        if body.get("customizationConfig"):
            raise Invalid("customizationConfig (distillation, reinforcement fine-tuning) is not supported")
        training = parse_uri(self.settings, (body.get("trainingDataConfig") or {}).get("s3Uri"),
                             "trainingDataConfig.s3Uri")
        validators = (body.get("validationDataConfig") or {}).get("validators") or []
        if not isinstance(validators, list) or len(validators) > 10:
            raise Invalid("validationDataConfig.validators takes at most 10 entries")
        validation = [parse_uri(self.settings, v.get("s3Uri") if isinstance(v, dict) else None,
                                "validationDataConfig.validators.s3Uri") for v in validators]
        output = parse_uri(self.settings, (body.get("outputDataConfig") or {}).get("s3Uri"), "outputDataConfig.s3Uri")
        if output.scheme == "upload":
            raise Invalid("outputDataConfig.s3Uri must be an s3:// or file:// location")
        raw = body.get("hyperParameters") or {}
        if not isinstance(raw, dict):
            raise Invalid("hyperParameters must be a map of strings")
        hyper = datasets.parse_hyperparameters(kind, raw)
        # Fail fast: the data is read and checked now, so a bad line is reported to the caller, not later.
        store = self.objects(account)
        datasets.parse_dataset(store.read(training), training.uri, kind)
        for where in validation:
            datasets.parse_dataset(store.read(where), where.uri, kind, datasets.VALIDATION)
        job_tags = check_tags(body.get("jobTags"), "jobTags")
        model_tags = check_tags(body.get("customModelTags"), "customModelTags")
        key_ref = body.get("customModelKmsKeyId")
        request = {"jobName": job_name, "customModelName": model_name, "roleArn": body["roleArn"],
                   "baseModelArn": _foundation_arn(self.settings, base.model_id), "baseModelId": base.model_id,
                   "customizationType": kind, "hyperParameters": {k: str(v) for k, v in raw.items()},
                   "effectiveHyperParameters": dataclasses.asdict(hyper),
                   "trainingDataConfig": {"s3Uri": training.uri},
                   "outputDataConfig": {"s3Uri": body["outputDataConfig"]["s3Uri"]}}
        if validation:
            request["validationDataConfig"] = {"validators": [{"s3Uri": v.uri} for v in validation]}
        if body.get("vpcConfig"):
            request["vpcConfig"] = body["vpcConfig"]
        if self.models._lookup(account, "custom", model_name) is not None:
            raise Conflict(f"A custom model named {model_name} already exists")
        key = self.records.keys.resolve(account, key_ref) if key_ref else None
        details = {"jobName": job_name, "jobArn": self.records.arn(account, KIND, job_id),
                   "customizationType": kind, "hyperParameters": request["hyperParameters"],
                   "trainingDataConfig": request["trainingDataConfig"],
                   "outputDataConfig": request["outputDataConfig"],
                   **({"validationDataConfig": request["validationDataConfig"]} if validation else {})}
        pending = self.models.pending(model_id, "custom", model_name, base.model_id, job_id, details, account, key,
                                      model_tags)
        record = self.records.create(ctx, KIND, job_id, job_name, base.model_id, request, kms_key_ref=key_ref,
                                     tags=job_tags, client_token=body.get("clientRequestToken"),
                                     output_model=model_id, also=(pending,))
        return {"jobArn": self.records.arn(account, KIND, record.row.id)}

    def get(self, ctx: CallContext, identifier: str) -> dict[str, Any]:
        return self.describe(self.records.find(ctx, KIND, identifier))

    def list_jobs(self, ctx: CallContext, query: Any) -> dict[str, Any]:
        rows = filtered(self.records.list_jobs(ctx, KIND), query, STATUS)
        items, token = page(rows, query.get("maxResults"), query.get("nextToken"))
        summaries = []
        for r in items:
            status = STATUS[r.job.status]
            summary = {"jobArn": self.records.arn(r.row.account_id, KIND, r.row.id), "jobName": r.row.name,
                       "baseModelArn": _foundation_arn(self.settings, r.row.model_id), "status": status,
                       "creationTime": iso(r.row.created_at), "lastModifiedTime": iso(r.job.updated_at),
                       "customModelName": None, "customizationType": None}
            if r.row.ended_at:
                summary["endTime"] = iso(r.row.ended_at)
            if status == "Completed" and r.row.output_model:
                summary["customModelArn"] = self.models.arn(r.row.account_id, "custom", r.row.output_model)
            summaries.append({k: v for k, v in summary.items() if v is not None})
        return {"modelCustomizationJobSummaries": summaries, **({"nextToken": token} if token else {})}

    def stop(self, ctx: CallContext, identifier: str) -> None:
        self.records.stop(ctx, KIND, identifier)

    def describe(self, record: JobRecord) -> dict[str, Any]:
        row, job, req = record.row, record.job, record.request
        status = STATUS[job.status]
        progress = record.progress
        out: dict[str, Any] = {
            "jobArn": self.records.arn(row.account_id, KIND, row.id), "jobName": row.name,
            "outputModelName": req["customModelName"], "roleArn": req["roleArn"], "status": status,
            "creationTime": iso(row.created_at), "lastModifiedTime": iso(job.updated_at),
            "baseModelArn": req["baseModelArn"], "hyperParameters": req["hyperParameters"],
            "trainingDataConfig": req["trainingDataConfig"], "outputDataConfig": req["outputDataConfig"],
            "customizationType": req["customizationType"],
            "statusDetails": _status_details(job.status, progress, iso(row.created_at), iso(job.updated_at)),
        }
        for name in ("validationDataConfig", "vpcConfig"):
            if name in req:
                out[name] = req[name]
        if row.client_token:
            out["clientRequestToken"] = row.client_token
        if row.kms_key:
            out["outputModelKmsKeyArn"] = self.records.keys.arn(row.account_id, row.kms_key)
        if row.ended_at:
            out["endTime"] = iso(row.ended_at)
        if job.failure:
            out["failureMessage"] = job.failure
        if status == "Completed" and row.output_model:
            out["outputModelArn"] = self.models.arn(row.account_id, "custom", row.output_model)
        if progress.get("trainingLoss") is not None:
            out["trainingMetrics"] = {"trainingLoss": progress["trainingLoss"]}
        if progress.get("validationLoss") is not None:
            out["validationMetrics"] = [{"validationLoss": progress["validationLoss"]}]
        return out

    # -- the worker -----------------------------------------------------------------------------------

    def run(self, run: JobRun) -> None:
        record = self.records.load(run.account_id, run.id)
        req, model_id = record.request, record.row.output_model or ""
        try:
            self._train(run, record, req, model_id)
        except Stopped:
            self.models.discard(run.account_id, model_id)  # a stopped job makes no model, as on Bedrock
            self.records.ended(run.account_id, run.id)
            raise
        except Exception as exc:
            message = exc.message if isinstance(exc, OutcropError) else f"internal error: {type(exc).__name__}: {exc}"
            self.models.fail(run.account_id, model_id, message)
            self.records.ended(run.account_id, run.id)
            raise
        finally:  # only a run cut short (its process gone, none of this ran) keeps its checkpoint, to resume
            self.models.drop_checkpoint(run.account_id, model_id)
        self.records.ended(run.account_id, run.id)

    def _train(self, run: JobRun, record: JobRecord, req: dict[str, Any], model_id: str) -> None:
        from outcrop.core.customization import gguf_lora, training

        store: ObjectStore = self.objects(run.account_id)
        kind = req["customizationType"]
        run.report(force=True, stage="validation", step=0)
        training_uri = parse_uri(self.settings, req["trainingDataConfig"]["s3Uri"], "trainingDataConfig.s3Uri")
        train = datasets.parse_dataset(store.read(training_uri), training_uri.uri, kind)
        validation: list[Any] = []
        for v in (req.get("validationDataConfig") or {}).get("validators", []):
            where = parse_uri(self.settings, v["s3Uri"], "validationDataConfig.validators.s3Uri")
            validation += datasets.parse_dataset(store.read(where), where.uri, kind, datasets.VALIDATION)
        hyper = datasets.parse_hyperparameters(kind, req["hyperParameters"])
        spec = self.catalog.resolve(req["baseModelId"]).spec
        base = self._gguf(spec)
        steps: list[Any] = []

        def on_step(metrics: Any) -> None:
            steps.append(metrics)
            history = run.progress.setdefault("history", [])  # a resumed run reports its steps again
            history[:] = [h for h in history if h[0] <= metrics.step][-999:] + [
                [metrics.step + 1, round(metrics.training_loss, 5)]]
            values = {"stage": "training", "step": metrics.step + 1, "epoch": metrics.epoch + 1,
                      "trainingLoss": metrics.training_loss}
            if metrics.validation_loss is not None:
                values["validationLoss"] = metrics.validation_loss
            run.report(**{k: v for k, v in values.items() if v is not None})

        output = parse_uri(self.settings, req["outputDataConfig"]["s3Uri"], "outputDataConfig.s3Uri")
        folder = output.child(f"model-customization-job-{run.id}")
        with tempfile.TemporaryDirectory(dir=self._scratch()) as scratch:
            try:
                # On a thread of its own: torch's OpenMP team would otherwise outlive the run on this worker
                # thread and halve llama.cpp's decode speed (engines.openmp).
                account = run.account_id
                checkpoints = training.Checkpoints(
                    lambda: self.models.load_checkpoint(account, model_id),
                    lambda data: self.models.save_checkpoint(account, model_id, data),
                    self.settings.fine_tuning_checkpoint_s)
                result = on_own_thread(lambda: training.train(
                    str(base), self.settings.model_cache / "hf", train, validation or None, hyper,
                    Path(scratch) / "adapter", on_step, run.should_stop, threads=self.settings.effective_threads,
                    checkpoints=checkpoints))
            except training.TrainingStopped:
                raise Stopped() from None
            run.report(force=True, stage="packaging")
            self._write_metrics(store, folder, steps)
            adapter_dir = Path(result.adapter_dir)
            files = {"peft": _pack(adapter_dir)}
            serving, note = "llamacpp-lora", None
            try:
                lora = Path(scratch) / "adapter.gguf"
                gguf_lora.convert_adapter(adapter_dir, base, lora)
                files["gguf-lora"] = lora.read_bytes()
            except gguf_lora.Unconvertible as exc:
                serving, note = "transformers-peft", f"Served with transformers + peft: {exc}"
                log.warning("custom model %s: %s", model_id, note)
        details: dict[str, Any] = {"trainingMetrics": {"trainingLoss": result.training_loss}}
        if result.validation_loss is not None:
            details["validationMetrics"] = [{"validationLoss": result.validation_loss}]
        if note:
            details["servingNote"] = note
        self.models.activate(run.account_id, model_id, files, serving, details=details)
        run.report(force=True, stage="completed", trainingLoss=result.training_loss)
        for listener in self.on_model:
            listener(run.account_id, model_id)

    def _write_metrics(self, store: ObjectStore, folder: Location, steps: list[Any]) -> None:
        from outcrop.core.customization import training

        store.write(folder.child(training.TRAINING_METRICS_PATH), training.training_metrics_csv(steps).encode(),
                    "text/csv")
        if any(s.validation_loss is not None for s in steps):
            store.write(folder.child(training.VALIDATION_METRICS_PATH),
                        training.validation_metrics_csv(steps).encode(), "text/csv")

    def _base(self, identifier: Any, kind: str) -> ModelSpec:
        if not isinstance(identifier, str) or not identifier:
            raise Invalid("baseModelIdentifier is required")
        try:
            spec = self.catalog.resolve(identifier).spec
        except NotFound:
            raise Invalid(f"The base model {identifier} is not in the catalog") from None
        if kind not in spec.customizations:
            raise Invalid(f"The model {identifier} does not support {kind}; models that do: "
                          + ", ".join(s.model_id for s in self.catalog.models.values() if kind in s.customizations))
        if spec.engine != "llamacpp":
            raise Invalid(f"The model {identifier} is served by {spec.engine}; only GGUF models can be customized")
        return spec

    def _gguf(self, spec: ModelSpec) -> Path:
        if spec.pack:
            return modelpacks.pack_path(modelpacks.PACKS[spec.pack], self.settings.model_cache)
        if not spec.path:
            raise Invalid(f"The model {spec.model_id} has no local weights to train on")
        return Path(spec.path)

    def _scratch(self) -> str:
        """Where the adapter is written before it is sealed: RAM (/dev/shm) where there is some, so the
        plaintext weights never reach a disk; else the data dir's private tmp."""
        if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
            return "/dev/shm"
        path = self.settings.home / "tmp"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return str(path)


def _pack(folder: Path) -> bytes:
    """A peft adapter folder as one uncompressed tar (sealed as one blob)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                tar.add(path, arcname=path.name)
    return buffer.getvalue()


def _foundation_arn(settings: Settings, model_id: str) -> str:
    return f"arn:aws:bedrock:{settings.region}::foundation-model/{model_id}"


def _status_details(status: str, progress: dict[str, Any], created: str | None, updated: str | None,
                    ) -> dict[str, Any]:
    """Bedrock's three stages — validation, data processing, training — from the job's progress: stages before
    the current one are Completed, the current one carries the job's state, later ones have NotStarted (or the
    job's end state when it ended early)."""
    current = {"validation": 0, "training": 2, "packaging": 2, "completed": 3}.get(progress.get("stage", ""), 0)
    ending = {"failed": "Failed", "stopped": "Stopped", "stopping": "Stopping"}.get(status)
    out = {}
    for i, name in enumerate(("validation", "dataProcessing", "training")):
        state: str
        if status == "completed" or i < current:
            state = "Completed"
        elif i == current:
            state = ending or "InProgress"
        else:
            state = ending or "NotStarted"
        out[f"{name}Details"] = {"status": state, "creationTime": created, "lastModifiedTime": updated}
    return out
