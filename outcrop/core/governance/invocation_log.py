"""Model invocation logging, as Bedrock does it: off by default; when an account turns it on, each
invocation becomes a record in Bedrock's schema, sealed under the account's key, written off the request path.

Destinations: `cloudWatchConfig` → the local log store (a table, queryable through the native API and the
CLI); `s3Config` → sealed files under `<home>/invocation-logs/<bucketName>/<keyPrefix>/…`. Bodies over
100 KiB go to `largeDataDeliveryS3Config` when one is given, as in Bedrock.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import uuid
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import AccessService
from outcrop.core.cache import Generation
from outcrop.core.governance import CallContext, Invocation
from outcrop.core.kms import KeyService
from outcrop.errors import Invalid
from outcrop.storage.repositories import AccountScope
from outcrop.storage.tables import InvocationLog, LoggingConfig
from outcrop.types import (
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResult,
    ImageBlock,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)

log = logging.getLogger("outcrop.invocation_log")
LARGE = 100 * 1024
LINGER_S = 0.2
_FLAGS = ("textDataDeliveryEnabled", "imageDataDeliveryEnabled", "embeddingDataDeliveryEnabled",
          "videoDataDeliveryEnabled", "audioDataDeliveryEnabled")
_SAFE_PART = str.maketrans({c: "_" for c in "/\\:\0"})


def validate(config: object) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise Invalid("loggingConfig is required")
    unknown = set(config) - {"cloudWatchConfig", "s3Config", *_FLAGS}
    if unknown:
        raise Invalid(f"Unknown loggingConfig members: {sorted(unknown)}")
    if not config.get("cloudWatchConfig") and not config.get("s3Config"):
        raise Invalid("loggingConfig needs a destination: cloudWatchConfig, s3Config or both")
    for flag in _FLAGS:
        if flag in config and not isinstance(config[flag], bool):
            raise Invalid(f"{flag} must be a boolean")
    cloudwatch, s3 = config.get("cloudWatchConfig") or {}, config.get("s3Config") or {}
    if cloudwatch and not isinstance(cloudwatch.get("logGroupName"), str):
        raise Invalid("cloudWatchConfig.logGroupName is required")
    if s3 and not isinstance(s3.get("bucketName"), str):
        raise Invalid("s3Config.bucketName is required")
    return config


def body_json(value: Any) -> Any:
    """The neutral request or result in Converse's JSON shape, written out by hand: dataclasses.asdict
    costs ~100 µs a record, and this runs beside the event loop (they share the GIL)."""
    if isinstance(value, ChatRequest):
        out: dict[str, Any] = {"messages": [{"role": m.role, "content": [_block(b) for b in m.content]}
                                            for m in value.messages]}
        if value.system:
            out["system"] = [{"text": text} for text in value.system]
        if value.prompt is not None:
            out["prompt"] = value.prompt
        config = {k: v for k, v in (("maxTokens", value.config.max_tokens), ("temperature", value.config.temperature),
                                    ("topP", value.config.top_p), ("stopSequences", value.config.stop or None))
                  if v is not None}
        if config:
            out["inferenceConfig"] = config
        return out
    if isinstance(value, EmbeddingRequest):
        return {"texts": value.texts, **({"dimensions": value.dimensions} if value.dimensions else {})}
    if isinstance(value, EmbeddingResult):
        return {"vectors": value.vectors}
    if isinstance(value, str):
        return {"text": value}
    return _plain(value)


def _block(block: Any) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"text": block.text}
    if isinstance(block, ImageBlock):
        return {"image": {"format": block.format, "source": {"bytes": base64.b64encode(block.data).decode()}}}
    if isinstance(block, ToolUseBlock):
        return {"toolUse": {"toolUseId": block.id, "name": block.name, "input": block.input}}
    if isinstance(block, ToolResultBlock):
        return {"toolResult": {"toolUseId": block.tool_use_id, "content": [_block(b) for b in block.content],
                               **({"status": block.status} if block.status else {})}}
    return {"unknown": _plain(block)}


def _plain(value: Any) -> Any:
    """The neutral request/result as JSON: dataclasses to dicts, bytes (images) to base64."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)  # recursive already: only bytes are left to convert, found by one walk below
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


class InvocationLogger:
    """A Recorder: queues a record for each invocation of an account that has logging on."""

    def __init__(self, sessions: sessionmaker[Session], keys: KeyService, access: AccessService, home: Path) -> None:
        self.sessions = sessions
        self.keys = keys
        self.access = access
        self.root = home / "invocation-logs"
        self.generation = Generation(sessions, "logging")
        self._configs: dict[str, dict[str, Any] | None] = {}
        self._queue: queue.Queue[tuple[Invocation, dict[str, Any]] | None] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        threading.Thread(target=self._run, name="outcrop-invocation-log", daemon=True).start()

    # -- configuration (PutModelInvocationLoggingConfiguration and friends) --------------------------

    def put(self, ctx: CallContext, config: object) -> None:
        account = self._account(ctx)
        document = json.dumps(validate(config))
        with self.sessions.begin() as session:
            scope = AccountScope(session, account)
            row = scope.get(LoggingConfig, account)
            if row is None:
                scope.add(LoggingConfig(account_id=account, config=document))
            else:
                row.config = document
            self.generation.bump(session)
        self._configs.pop(account, None)

    def get(self, ctx: CallContext) -> dict[str, Any] | None:
        return self._config(self._account(ctx))

    def delete(self, ctx: CallContext) -> None:
        account = self._account(ctx)
        with self.sessions.begin() as session:
            row = session.get(LoggingConfig, account)
            if row is not None:
                session.delete(row)
            self.generation.bump(session)
        self._configs.pop(account, None)

    def _account(self, ctx: CallContext) -> str:
        if ctx.caller is None:
            raise Invalid("invocation logging is configured per account, through the API")
        self.access.require(ctx)
        return ctx.caller.account_id

    def _config(self, account: str) -> dict[str, Any] | None:
        if self.generation.changed():
            self._configs.clear()
        if account not in self._configs:
            with self.sessions() as session:
                row = session.get(LoggingConfig, account)
            self._configs[account] = json.loads(row.config) if row is not None else None
        return self._configs[account]

    # -- recording -----------------------------------------------------------------------------------

    def record(self, invocation: Invocation) -> None:
        caller = invocation.context.caller
        if caller is None or invocation.kind == "count_tokens":
            return
        config = self._config(caller.account_id)
        if config is not None:
            self._idle.clear()
            self._queue.put((invocation, config))

    def flush(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Linger a moment to gather a batch: one wake-up and one transaction for many records, instead of
            # a thread switch per call competing with the event loop for the GIL (measured: bench/governance_…).
            while len(batch) < 500 and batch[-1] is not None:
                try:
                    batch.append(self._queue.get(timeout=LINGER_S))
                except queue.Empty:
                    break
            rows: list[dict[str, Any]] = []
            for item in batch:
                if item is None:
                    continue
                try:
                    rows += self._prepare(*item)
                except Exception:
                    log.exception("invocation log: could not write a record")
            if rows:
                try:
                    with self.sessions.begin() as session:  # one executemany: no ORM unit of work per record
                        session.execute(insert(InvocationLog), rows)
                except Exception:
                    log.exception("invocation log: could not store %d records", len(rows))
            if self._queue.empty():
                self._idle.set()

    def _prepare(self, invocation: Invocation, config: dict[str, Any]) -> list[dict[str, Any]]:
        """Seal the record; write its files; return the row for the local store, if that is a destination."""
        ctx = invocation.context
        assert ctx.caller is not None
        account, log_id, now = ctx.caller.account_id, str(uuid.uuid4()), datetime.now(UTC)
        record = self.schema(invocation, config, now)
        self._offload_large(record, config, account, log_id, now)
        body = json.dumps(record).encode()
        if config.get("s3Config"):
            self._file(config["s3Config"], account, now, f"{ctx.request_id}.json", body, f"invocation-log:{log_id}")
        if not config.get("cloudWatchConfig"):
            return []
        return [{"id": log_id, "account_id": account, "created_at": now, "request_id": ctx.request_id,
                 "operation": ctx.operation, "model_id": invocation.model_id,
                 "sealed": self.keys.seal(account, body, f"invocation-log:{log_id}")}]

    def schema(self, invocation: Invocation, config: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Bedrock's invocation-log record; bodies only for the modalities the account chose to log."""
        ctx = invocation.context
        assert ctx.caller is not None
        embedding = invocation.kind == "embedding"
        wanted = config.get("embeddingDataDeliveryEnabled" if embedding else "textDataDeliveryEnabled", False)
        images = _has_images(invocation.request)
        if images and not config.get("imageDataDeliveryEnabled", False):
            wanted = False
        record: dict[str, Any] = {
            "schemaType": "ModelInvocationLog", "schemaVersion": "1.0",
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "accountId": ctx.caller.account_id,
            "identity": {"arn": ctx.caller.arn}, "region": ctx.region, "requestId": ctx.request_id,
            "operation": ctx.operation, "modelId": invocation.model_id,
            "input": {"inputContentType": "application/json", "inputTokenCount": invocation.input_tokens},
            "output": {"outputContentType": "application/json", "outputTokenCount": invocation.output_tokens},
        }
        if wanted:
            record["input"]["inputBodyJson"] = body_json(invocation.request)
            if invocation.response is not None:
                record["output"]["outputBodyJson"] = body_json(invocation.response)
        if invocation.error:
            record["errorCode"] = invocation.error
        return record

    def _offload_large(self, record: dict[str, Any], config: dict[str, Any], account: str, log_id: str,
                       now: datetime) -> None:
        large = (config.get("cloudWatchConfig") or {}).get("largeDataDeliveryS3Config")
        if not large:
            return
        for part, key in (("input", "inputBodyJson"), ("output", "outputBodyJson")):
            body = record[part].get(key)
            if body is None:
                continue
            data = json.dumps(body).encode()
            if len(data) > LARGE:
                name = f"{record['requestId']}-{part}.json"
                path = self._file(large, account, now, name, data, f"invocation-log:{log_id}:{part}")
                del record[part][key]
                record[part][key.replace("Json", "S3Path")] = f"s3://{large['bucketName']}/{path}"

    def _file(self, target: dict[str, Any], account: str, now: datetime, name: str, data: bytes,
              context: str) -> str:
        """A sealed file; returns its key under the bucket (Bedrock's AWSLogs/… layout)."""
        prefix = str(target.get("keyPrefix") or "").strip("/").translate(_SAFE_PART)
        key = "/".join(p for p in (prefix, "AWSLogs", account, "BedrockModelInvocationLogs", now.strftime(
            "%Y/%m/%d/%H"), name) if p)
        path = self.root / str(target["bucketName"]).translate(_SAFE_PART) / key
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.with_suffix(path.suffix + ".sealed").write_bytes(self.keys.seal(account, data, context))
        return key

    # -- reading -------------------------------------------------------------------------------------

    def list_logs(self, ctx: CallContext, since: datetime | None = None, model_id: str | None = None,
                  max_results: int = 100) -> list[dict[str, Any]]:
        """The local log store (cloudWatchConfig destination), newest first, opened for the caller."""
        account = self._account(ctx)
        if not 1 <= max_results <= 1000:
            raise Invalid("MaxResults must be between 1 and 1000")
        self.flush()
        where = [InvocationLog.created_at >= since] if since else []
        if model_id:
            where.append(InvocationLog.model_id == model_id)
        with self.sessions() as session:
            rows = AccountScope(session, account).rows(InvocationLog, *where,
                                                       order_by=InvocationLog.created_at.desc())[:max_results]
        return [json.loads(self.keys.open(account, row.sealed, f"invocation-log:{row.id}")) for row in rows]


def _has_images(request: Any) -> bool:
    for message in getattr(request, "messages", []) or []:
        if any(isinstance(block, ImageBlock) for block in message.content):
            return True
    return False
