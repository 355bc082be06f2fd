"""`outcrop quotas`: per-account, per-model limits, set in-process on the data dir as the service operator.

A running server notices a change within a second, like the other admin commands (outcrop.cli.admin).
"""

from __future__ import annotations

import typer

from outcrop.cli import admin

app = typer.Typer(help="Per-account, per-model quotas (service operator).", no_args_is_help=True)
MODEL_HELP = 'model ID as clients request it, or "*" for each model without a quota of its own'


@app.command("set")
def quota_set(account_id: str, model_id: str = typer.Argument(..., help=MODEL_HELP),
              rpm: int = typer.Option(None, "--rpm", help="requests per minute"),
              tpm: int = typer.Option(None, "--tpm", help="tokens (in + out) per minute"),
              streams: int = typer.Option(None, "--streams", help="streams running at once")) -> None:
    """Set (replace) ACCOUNT_ID's limits on MODEL_ID; a limit left out is no limit."""
    # account None: act as the first account's admin, who is the service operator
    admin._run("PutQuota", None, lambda s, ctx: s.quotas.put_quota(ctx, account_id, model_id, rpm, tpm, streams))


@app.command("list")
def quota_list(account: str = typer.Option(None, "--account", help="only this account's quotas")) -> None:
    admin._run("ListQuotas", None, lambda s, ctx: {"Quotas": s.quotas.list_quotas(ctx, account)})


@app.command("delete")
def quota_delete(account_id: str, model_id: str = typer.Argument(..., help=MODEL_HELP)) -> None:
    """Remove ACCOUNT_ID's limits on MODEL_ID."""
    admin._run("DeleteQuota", None, lambda s, ctx: s.quotas.delete_quota(ctx, account_id, model_id))
