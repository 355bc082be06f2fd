"""`outcrop usage`: invocations and tokens per day, model and key, read in-process from the data dir."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from outcrop.cli.common import console, friendly_errors, load_settings

_RELATIVE = re.compile(r"^(\d+)d$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COUNTS = ("Invocations", "InputTokens", "OutputTokens", "Errors")


def since_day(value: str, today: datetime | None = None) -> str:
    """`7d` → the first of the last 7 UTC days, today included; a YYYY-MM-DD passes through."""
    match = _RELATIVE.match(value.strip())
    if not match:
        if not _DAY.match(value.strip()):
            raise typer.BadParameter(f"give Nd (e.g. 7d) or a day as YYYY-MM-DD, not {value!r}", param_hint="--since")
        return value.strip()
    days = int(match.group(1))
    if days < 1:
        raise typer.BadParameter("give at least 1d")
    return ((today or datetime.now(UTC)) - timedelta(days=days - 1)).strftime("%Y-%m-%d")


def usage(
    since: str = typer.Option("7d", help="Nd (the last N UTC days, today included) or a day, YYYY-MM-DD"),
    account: str = typer.Option(None, "--account", help="12-digit account ID (default: the first account)"),
    by: str = typer.Option("day,model,key", help="columns to break totals down by: day, model, key"),
) -> None:
    """Invocations, tokens and errors per day, model and key (key "" = API key or local CLI)."""
    from outcrop.core.access import AccessService
    from outcrop.core.governance import CallContext
    from outcrop.core.governance.usage import UsageLedger
    from outcrop.storage.db import make_engine, migrate, session_factory

    settings = load_settings()
    if not (settings.home / "outcrop.db").exists():
        console.print(f"[red]no database in {settings.home}; run `outcrop serve` once first[/red]")
        raise typer.Exit(1)
    engine = make_engine(settings.database_url)
    with friendly_errors():
        migrate(engine)
        # Whoever holds the data dir reads any account's usage: a local context has no caller to check.
        ledger = UsageLedger(session_factory(engine), AccessService(lambda account_id, principal_id: []))
        try:
            rows = ledger.usage(CallContext(None, "GetUsage"), since_day(since), group_by=by.split(","),
                                account_id=account)
        finally:
            ledger.close()
            engine.dispose()
    Console().print(_table(rows, by))


def _table(rows: list[dict[str, Any]], by: str) -> Table:
    names = [n for n in ("Day", "ModelId", "KeyId") if rows and n in rows[0]] or _columns(by)
    table = Table(*names, *_COUNTS, show_footer=bool(rows))
    for row in rows:
        table.add_row(*[str(row[n]) or "—" for n in names], *[f"{row[c]:,}" for c in _COUNTS])
    if rows:
        for column, name in zip(table.columns[len(names):], _COUNTS, strict=True):
            column.footer = f"{sum(r[name] for r in rows):,}"
            column.justify = "right"
        if names:
            table.columns[0].footer = "total"
    return table


def _columns(by: str) -> list[str]:
    wanted = {part.strip().lower() for part in by.split(",")}
    return [name for key, name in (("day", "Day"), ("model", "ModelId"), ("key", "KeyId")) if key in wanted]
