"""`outcrop jobs|finetune|batch`: long work from the terminal, in-process on the data dir, as the account's admin.

`finetune create` uploads a local JSONL file (sealed, like the Files API), starts the job and — unless
`--no-wait` — runs it right here with a live loss display (or follows it, when a running server's worker got it
first).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from outcrop.cli.admin import ACCOUNT, _run
from outcrop.cli.common import console

jobs = typer.Typer(help="Long-running jobs: customization, import, batch inference, async invoke, ingestion.",
                   no_args_is_help=True)
finetune = typer.Typer(help="Private LoRA fine-tuning of a local model on your JSONL data.", no_args_is_help=True)
batch = typer.Typer(help="Batch inference over a JSONL file of InvokeModel bodies.", no_args_is_help=True)
MODEL_JOBS = ("customization", "import", "batch", "async")
ROLE = "arn:aws:iam::000000000000:role/outcrop-cli"


def _job_row(svc: Any, ctx: Any, job_id: str) -> Any:
    from outcrop.errors import NotFound
    from outcrop.storage.repositories import AccountScope
    from outcrop.storage.tables import Job, ModelJob

    account = ctx.caller.account_id
    with svc.jobs.sessions() as session:
        scope = AccountScope(session, account)
        job = scope.get(Job, job_id.rsplit("/", 1)[-1])
        if job is None:  # by a model job's name
            named = scope.first(ModelJob, ModelJob.name == job_id)
            job = scope.get(Job, named.id) if named is not None else None
        if job is None:
            raise NotFound(f"No job {job_id} in account {account}")
        session.expunge(job)
    return job


def _describe(svc: Any, ctx: Any, job: Any) -> dict[str, Any]:
    kind = job.kind
    if kind == "customization":
        return svc.customization.finetune.get(ctx, job.id)  # type: ignore[no-any-return]
    if kind == "import":
        return svc.customization.imports.get(ctx, job.id)  # type: ignore[no-any-return]
    if kind == "batch":
        return svc.batch.get(ctx, job.id)  # type: ignore[no-any-return]
    if kind == "async":
        return svc.async_invoke.get(ctx, svc.model_jobs.arn(ctx.caller.account_id, "async", job.id))  # type: ignore[no-any-return]
    return {"id": job.id, "kind": kind, "target": job.target, "status": job.status, "failure": job.failure,
            "progress": json.loads(job.progress or "{}")}


@jobs.command("list")
def list_jobs(kind: str = typer.Option(None, help="customization | import | batch | async | ingestion"),
              account: str = ACCOUNT) -> None:
    """Every job of the account, newest first."""
    from outcrop.storage.repositories import AccountScope
    from outcrop.storage.tables import Job, ModelJob

    def call(svc: Any, ctx: Any) -> None:
        with svc.jobs.sessions() as session:
            scope = AccountScope(session, ctx.caller.account_id)
            rows = scope.rows(Job, *([Job.kind == kind] if kind else []), order_by=Job.created_at.desc())
            names = {m.id: m.name for m in scope.rows(ModelJob)}
        table = Table("id", "kind", "name", "status", "progress", "created")
        for row in rows:
            progress = json.loads(row.progress or "{}")
            progress.pop("history", None)
            table.add_row(row.id, row.kind, names.get(row.id, row.target), row.status,
                          ", ".join(f"{k}={_short(v)}" for k, v in progress.items())[:60],
                          row.created_at.strftime("%Y-%m-%d %H:%M:%S"))
        console.print(table)
    _run("ListModelCustomizationJobs", account, call)


@jobs.command("get")
def get_job(job: str = typer.Argument(..., help="job ID, ARN or name"), account: str = ACCOUNT) -> None:
    """The job as its API describes it (GetModelCustomizationJob, GetModelInvocationJob, ...)."""
    _run("GetModelCustomizationJob", account, lambda svc, ctx: _describe(svc, ctx, _job_row(svc, ctx, job)))


@jobs.command("stop")
def stop_job(job: str = typer.Argument(..., help="job ID, ARN or name"), account: str = ACCOUNT) -> None:
    """Ask a job to stop: a queued one stops at once, a running one at its next step."""
    def call(svc: Any, ctx: Any) -> Any:
        row = _job_row(svc, ctx, job)
        svc.jobs.stop(ctx.caller.account_id, row.id, row.kind)
        return {"id": row.id, "status": svc.jobs.get(ctx.caller.account_id, row.id, row.kind).status}
    _run("StopModelCustomizationJob", account, call)


@jobs.command("logs")
def job_logs(job: str = typer.Argument(..., help="job ID, ARN or name"), account: str = ACCOUNT) -> None:
    """What a job reported: its stage, its step-wise training loss, its record counts, its failure."""
    def call(svc: Any, ctx: Any) -> None:
        row = _job_row(svc, ctx, job)
        progress = json.loads(row.progress or "{}")
        console.print(f"{row.kind} job {row.id}: {row.status} (attempt {row.attempts})")
        for step, loss in progress.pop("history", []):
            console.print(f"  step {step:>5}  training loss {loss:.4f}")
        for key, value in progress.items():
            console.print(f"  {key}: {value}")
        if row.failure:
            console.print(f"[red]  failure: {row.failure}[/red]")
    _run("GetModelCustomizationJob", account, call)


def _upload(svc: Any, ctx: Any, data: str) -> str:
    """A local file becomes a sealed upload (`file-…`); URIs pass through."""
    if data.startswith(("s3://", "file://", "file-")):
        return data
    path = Path(data).expanduser()
    if not path.is_file():
        raise typer.BadParameter(f"{data} is not a file (nor an s3:// or file:// URI)")
    return str(svc.files.create(ctx, path.name, "fine-tune", path.read_bytes()).id)


@finetune.command("create")
def finetune_create(
        name: str = typer.Option(..., "--name", help="the custom model's name"),
        data: str = typer.Option(..., "--data", help="training JSONL: a local file, s3:// or file:// URI"),
        base: str = typer.Option(None, "--base", help="base model ID (default: the default chat model)"),
        validation: str = typer.Option(None, "--validation", help="validation JSONL (same forms as --data)"),
        kind: str = typer.Option("FINE_TUNING", "--type", help="FINE_TUNING or CONTINUED_PRE_TRAINING"),
        epochs: int = typer.Option(None, "--epochs"), batch_size: int = typer.Option(None, "--batch-size"),
        learning_rate: float = typer.Option(None, "--learning-rate"),
        max_steps: int = typer.Option(None, "--max-steps"),
        output: str = typer.Option(None, "--output", help="where metrics files go (default <home>/files/outputs/)"),
        wait: bool = typer.Option(True, "--wait/--no-wait", help="train here now, showing the loss"),
        account: str = ACCOUNT) -> None:
    """Fine-tune a local model with LoRA (CreateModelCustomizationJob)."""
    def call(svc: Any, ctx: Any) -> Any:
        hyper = {k: str(v) for k, v in (("epochCount", epochs), ("batchSize", batch_size),
                                        ("learningRate", learning_rate), ("maxSteps", max_steps)) if v is not None}
        out = output or (svc.settings.home / "files" / "outputs").as_uri() + "/"
        body: dict[str, Any] = {
            "jobName": f"{name}-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}", "customModelName": name,
            "roleArn": ROLE, "baseModelIdentifier": base or svc.settings.default_chat_model,
            "customizationType": kind, "hyperParameters": hyper,
            "trainingDataConfig": {"s3Uri": _upload(svc, ctx, data)}, "outputDataConfig": {"s3Uri": out}}
        if validation:
            body["validationDataConfig"] = {"validators": [{"s3Uri": _upload(svc, ctx, validation)}]}
        arn = svc.customization.finetune.create(ctx, body)["jobArn"]
        if not wait:
            return {"jobArn": arn}
        _train_live(svc, arn.rsplit("/", 1)[-1], ctx.caller.account_id)
        return svc.customization.finetune.get(ctx, arn)
    _run("CreateModelCustomizationJob", account, call)


def _train_live(svc: Any, job_id: str, account: str) -> None:
    """Run the job here (or follow the server's worker that has it), drawing the loss as it falls."""
    runner = threading.Thread(target=svc.jobs.run_job, args=(job_id,), daemon=True)
    runner.start()
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            job = svc.jobs.get(account, job_id, "customization")
            live.update(_loss_view(job))
            if job.status in ("completed", "failed", "stopped"):
                break
            time.sleep(0.5)
    runner.join(5)


def _loss_view(job: Any) -> Table:
    progress = json.loads(job.progress or "{}")
    history = progress.get("history", [])
    table = Table(title=f"fine-tuning {job.id}: {job.status} ({progress.get('stage', 'queued')})")
    table.add_column("step", justify="right")
    table.add_column("epoch", justify="right")
    table.add_column("training loss", justify="right")
    table.add_column("")
    top = max((loss for _, loss in history), default=1.0) or 1.0
    for step, loss in history[-12:]:
        table.add_row(str(step), str(progress.get("epoch", "")), f"{loss:.4f}", "█" * max(1, int(30 * loss / top)))
    return table


@batch.command("create")
def batch_create(model: str = typer.Option(..., "--model", help="the model ID or ARN to run every record on"),
                 input_uri: str = typer.Option(..., "--input", help="JSONL of {recordId, modelInput}: s3:// or file://"),
                 output: str = typer.Option(None, "--output", help="output prefix (default <home>/files/outputs/)"),
                 name: str = typer.Option(None, "--name"), account: str = ACCOUNT) -> None:
    """Start a batch inference job (CreateModelInvocationJob); `outcrop jobs get` follows it."""
    def call(svc: Any, ctx: Any) -> Any:
        source = input_uri if "://" in input_uri else Path(input_uri).expanduser().resolve().as_uri()
        out = output or (svc.settings.home / "files" / "outputs").as_uri() + "/"
        body = {"jobName": name or f"batch-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}", "roleArn": ROLE,
                "modelId": model, "inputDataConfig": {"s3InputDataConfig": {"s3Uri": source}},
                "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": out}}}
        return svc.batch.create(ctx, body)
    _run("CreateModelInvocationJob", account, call)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
