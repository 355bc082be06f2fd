"""The `outcrop` command: one module per command group, plugins may add more."""

from __future__ import annotations

import typer

from outcrop.cli import admin, audit, chat, guardrails, jobs, kb, models, quotas, serve, usage

app = typer.Typer(name="outcrop", help="Amazon Bedrock's capabilities on your own hardware.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.command("serve")(serve.serve)
app.command("env")(serve.env)
app.command("worker")(serve.worker)
app.add_typer(models.app, name="models")
app.command("chat")(chat.chat)
app.command("embed")(chat.embed)
app.add_typer(admin.accounts, name="accounts")
app.add_typer(admin.users, name="users")
app.add_typer(admin.roles, name="roles")
app.add_typer(admin.keys, name="keys")
app.add_typer(admin.policies, name="policies")
app.add_typer(audit.app, name="audit")
app.add_typer(audit.logs, name="logs")
app.add_typer(quotas.app, name="quotas")
app.add_typer(kb.app, name="kb")
app.add_typer(guardrails.app, name="guardrails")
app.add_typer(jobs.jobs, name="jobs")
app.add_typer(jobs.finetune, name="finetune")
app.add_typer(jobs.batch, name="batch")
app.command("usage")(usage.usage)


def main() -> None:
    from outcrop.plugins import plugin_manager

    plugin_manager().hook.register_commands(cli=app)
    app()
