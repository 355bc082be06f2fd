"""`outcrop guardrails`: guardrails from the terminal, in-process on the data dir, as the account's admin."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer

from outcrop.cli.admin import ACCOUNT, _run

app = typer.Typer(help="Guardrails: create from a CreateGuardrail JSON body, version, apply to text.",
                  no_args_is_help=True)


@app.command("create")
def create(config: Path = typer.Argument(..., help="a JSON file holding a Bedrock CreateGuardrail request body"),
           account: str = ACCOUNT) -> None:
    """Create a guardrail (its DRAFT) from a CreateGuardrail body."""
    body = json.loads(config.read_text())
    _run("CreateGuardrail", account, lambda svc, ctx: svc.guardrails.service.create(ctx, body))


@app.command("list")
def listing(guardrail: str = typer.Argument(None, help="list this guardrail's versions instead"),
            account: str = ACCOUNT) -> None:
    _run("ListGuardrails", account, lambda svc, ctx: svc.guardrails.service.list_guardrails(ctx, guardrail))


@app.command("get")
def get(guardrail: str, version: str = typer.Option("DRAFT", "--version", "-v"), account: str = ACCOUNT) -> None:
    _run("GetGuardrail", account, lambda svc, ctx: svc.guardrails.service.get(ctx, guardrail, version))


@app.command("version")
def version(guardrail: str, description: str = typer.Option(None), account: str = ACCOUNT) -> None:
    """Freeze the DRAFT as the next numbered version."""
    body = {"description": description} if description else {}
    _run("CreateGuardrailVersion", account, lambda svc, ctx: svc.guardrails.service.create_version(ctx, guardrail, body))


@app.command("delete")
def delete(guardrail: str, version: str = typer.Option(None, "--version", "-v", help="one numbered version only"),
           account: str = ACCOUNT) -> None:
    _run("DeleteGuardrail", account, lambda svc, ctx: svc.guardrails.service.delete(ctx, guardrail, version))


@app.command("apply")
def apply(guardrail: str, text: str, version: str = typer.Option("DRAFT", "--version", "-v"),
          source: str = typer.Option("INPUT", help="INPUT or OUTPUT"),
          full: bool = typer.Option(False, "--full", help="list every assessment, not only interventions"),
          account: str = ACCOUNT) -> None:
    """Check a text as ApplyGuardrail does; prints the action, the outputs and the assessment."""
    from outcrop.core.guardrails.engine import TextUnit

    def call(svc: Any, ctx: Any) -> Any:
        _, _, outcome = asyncio.run(svc.guardrails.apply(ctx, guardrail, version, source.upper(), [TextUnit(text)],
                                                         full))
        return {"action": outcome.action, "actionReason": outcome.action_reason, "outputs": outcome.outputs,
                "assessment": outcome.assessment}
    _run("ApplyGuardrail", account, call)
