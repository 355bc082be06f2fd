"""`outcrop audit lookup|verify|export|public-key`: the audit trail from the data dir."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer

from outcrop.cli.admin import ACCOUNT, _as_admin, _services
from outcrop.cli.common import console, friendly_errors

app = typer.Typer(help="The audit trail: who called what, hash-chained and signed.", no_args_is_help=True)
_AGO = re.compile(r"^(\d+)([smhd])$")


def since_time(value: str | None) -> datetime | None:
    """`1h`, `30m`, `7d` ago, or an ISO 8601 time."""
    if value is None:
        return None
    match = _AGO.match(value)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
        return datetime.now(UTC) - timedelta(**{unit: int(match[1])})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use 1h, 30m, 7d or an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command("lookup")
def lookup(event_name: str = typer.Option(None, "--event-name"), username: str = typer.Option(None),
           access_key_id: str = typer.Option(None, "--access-key-id"), since: str = typer.Option(None),
           until: str = typer.Option(None), max_results: int = typer.Option(50, "--max-results"),
           as_json: bool = typer.Option(False, "--json", help="the full CloudTrail records"),
           account: str = ACCOUNT) -> None:
    """Events newest first, e.g. `outcrop audit lookup --event-name Converse --since 1h`."""
    from rich.table import Table

    attributes = [(k, v) for k, v in (("EventName", event_name), ("Username", username),
                                      ("AccessKeyId", access_key_id)) if v]
    with friendly_errors():
        svc = _services()
        ctx = _as_admin(svc, account, "LookupEvents")
        rows, _ = svc.audit.lookup(ctx, attributes[:1], since_time(since), since_time(until), max_results,
                                   account_id=ctx.caller.account_id)
        rows = [r for r in rows if all(_matches(r, k, v) for k, v in attributes[1:])]
        svc.audit.close()
    if as_json:
        for row in rows:
            print(row.record)
        return
    table = Table("time", "event", "user", "key", "source IP", "error")
    for row in rows:
        record = json.loads(row.record)
        table.add_row(record["eventTime"], row.event_name, row.username or "-", row.access_key_id or "-",
                      record.get("sourceIPAddress") or "-", row.error_code or "")
    console.print(table)


def _matches(row: object, key: str, value: str) -> bool:
    column = {"EventName": "event_name", "Username": "username", "AccessKeyId": "access_key_id"}[key]
    return getattr(row, column) == value


@app.command("verify")
def verify(account: str = typer.Option(None, "--account", help="one account (default: every account)")) -> None:
    """Check every chain and signed digest; names any edited, deleted or reordered record."""
    from outcrop.core.governance.integrity import verify as verify_trail

    with friendly_errors():
        svc = _services()
        svc.audit.close()
        checked, findings = verify_trail(svc.audit.sessions, svc.signer.key.public_key(), account)
    for finding in findings:
        console.print(f"[red]TAMPERED[/red] {finding}")
    if findings:
        console.print(f"[red]{len(findings)} problem(s) in {checked} records[/red]")
        raise typer.Exit(1)
    print(f"audit trail intact: {checked} records verified")


@app.command("prune")
def prune_trail(older_than: str = typer.Option(..., "--older-than", help="e.g. 90d")) -> None:
    """Retention: drop records older than this; a signed digest anchors what remains, so it still verifies."""
    from outcrop.core.governance.integrity import prune

    with friendly_errors():
        svc = _services()
        svc.audit.close()
        removed = prune(svc.audit.sessions, svc.signer, since_time(older_than) or datetime.now(UTC))
    print(f"{removed} records older than {older_than} removed")


@app.command("export")
def export(since: str = typer.Option(None), out: Path = typer.Option(None, help="folder (default <home>/exports)"),
           account: str = ACCOUNT) -> None:
    """Write the trail as gzipped JSON lines (one CloudTrail record a line), oldest first."""
    with friendly_errors():
        svc = _services()
        ctx = _as_admin(svc, account, "LookupEvents")
        folder = out or svc.settings.home / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        records, token = [], None
        while True:
            rows, token = svc.audit.lookup(ctx, None, since_time(since), None, 50, token, ctx.caller.account_id)
            records += [r.record for r in rows]
            if token is None:
                break
        svc.audit.close()
    path = folder / f"audit-{ctx.caller.account_id}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for record in reversed(records):
            handle.write(record + "\n")
    print(f"{len(records)} records → {path}")


@app.command("public-key")
def public_key() -> None:
    """The PEM public key that verifies the trail's signed digests (keep a copy outside the data dir)."""
    with friendly_errors():
        svc = _services()
        print(svc.signer.public_key_pem(), end="")
        svc.audit.close()


logs = typer.Typer(help="Model invocation logs (when the account turned logging on).", no_args_is_help=True)


@logs.command("invocations")
def invocations(since: str = typer.Option("1h", help="1h, 30m, 7d or an ISO 8601 time"),
                model_id: str = typer.Option(None, "--model-id"), max_results: int = typer.Option(100, "--max-results"),
                account: str = ACCOUNT) -> None:
    """Records of the local log store, opened with the account's key, one JSON object a line."""
    with friendly_errors():
        svc = _services()
        ctx = _as_admin(svc, account, "ListInvocationLogs")
        records = svc.invocation_log.list_logs(ctx, since_time(since), model_id, max_results)
        svc.close()
    for record in records:
        print(json.dumps(record))
