"""`outcrop accounts|users|roles|keys|policies`: the native API's operations, run in-process on the data dir.

Whoever runs these holds the data dir, so they act as the chosen account's admin (the first account by
default); a running server notices the changes within a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from outcrop.cli.common import console, friendly_errors, load_settings

accounts = typer.Typer(help="Tenants (service operator).", no_args_is_help=True)
users = typer.Typer(help="Users of an account.", no_args_is_help=True)
roles = typer.Typer(help="Roles of an account.", no_args_is_help=True)
keys = typer.Typer(help="Access keys, API keys, customer-managed keys and the master key.", no_args_is_help=True)
policies = typer.Typer(help="IAM policies and their attachments.", no_args_is_help=True)
ACCOUNT = typer.Option(None, "--account", help="12-digit account ID (default: the first account)")


def _services():  # type: ignore[no-untyped-def]
    from outcrop.server.deps import Services

    return Services.build(load_settings())


def _as_admin(svc: Any, account: str | None, operation: str):  # type: ignore[no-untyped-def]
    """A call context for the account's admin principal (the operator's own, for the first account)."""
    from outcrop.core.governance import CallContext
    from outcrop.core.identity import Caller
    from outcrop.storage.repositories import Accounts, AccountScope
    from outcrop.storage.tables import Principal

    with svc.identity.sessions() as session:
        every = Accounts(session)
        row = every.get(account) if account else every.first()
        if row is None:
            console.print(f"[red]no account {account or ''} here; run `outcrop serve` once first[/red]")
            raise typer.Exit(1)
        admin = AccountScope(session, row.id).first(Principal, Principal.is_admin.is_(True))
        assert admin is not None
    caller = Caller(row.id, admin.id, admin.name, True, None, "local", admin.kind, admin.is_operator)
    return CallContext(caller, operation, region=svc.settings.region)


def _run(operation: str, account: str | None, call: Any) -> None:
    """Run one operation as the account's admin; it joins the audit trail like an API call."""
    from datetime import UTC, datetime

    from outcrop.core.governance.audit import Outcome
    from outcrop.errors import OutcropError

    with friendly_errors():
        svc = _services()
        ctx = _as_admin(svc, account, operation)
        outcome = Outcome(operation, datetime.now(UTC), ctx, None, "outcrop-cli", ctx.region, ctx.request_id)
        try:
            result = call(svc, ctx)
        except OutcropError as exc:
            from outcrop.server.bedrock.wire import error_code

            outcome.error_code, outcome.error_message = error_code(exc)[0], exc.message
            raise
        finally:
            svc.audit.record(outcome)
            svc.close()
        if result is not None:
            print(json.dumps(result, indent=2, default=str))


@accounts.command("create")
def account_create(name: str) -> None:
    """Create an account; prints its admin's access key and API key (shown once)."""
    _run("CreateAccount", None, lambda s, ctx: s.accounts.create_account(ctx, name))


@accounts.command("list")
def account_list() -> None:
    _run("ListAccounts", None, lambda s, ctx: s.accounts.list_accounts(ctx))


@accounts.command("suspend")
def account_suspend(account_id: str) -> None:
    """Every key of the account stops working."""
    _run("UpdateAccount", None, lambda s, ctx: s.accounts.update_account(ctx, account_id, "Suspended"))


@accounts.command("activate")
def account_activate(account_id: str) -> None:
    _run("UpdateAccount", None, lambda s, ctx: s.accounts.update_account(ctx, account_id, "Active"))


def _principal_commands(app: typer.Typer, kind: str) -> None:
    title = kind.title()

    @app.command("create")
    def create(name: str, account: str = ACCOUNT) -> None:
        _run(f"Create{title}", account, lambda s, ctx: s.accounts.create_principal(ctx, kind, name))

    @app.command("list")
    def listing(account: str = ACCOUNT) -> None:
        _run(f"List{title}s", account, lambda s, ctx: s.accounts.list_principals(ctx, kind))

    @app.command("delete")
    def delete(name: str, account: str = ACCOUNT) -> None:
        _run(f"Delete{title}", account, lambda s, ctx: s.accounts.delete_principal(ctx, kind, name))


_principal_commands(users, "user")
_principal_commands(roles, "role")


@keys.command("create")
def key_create(user: str = typer.Argument(None), account: str = ACCOUNT) -> None:
    """A new access key (for USER, or the account's admin)."""
    _run("CreateAccessKey", account, lambda s, ctx: s.accounts.create_access_key(ctx, user))


@keys.command("list")
def key_list(user: str = typer.Argument(None), account: str = ACCOUNT) -> None:
    _run("ListAccessKeys", account, lambda s, ctx: s.accounts.list_access_keys(ctx, user))


@keys.command("deactivate")
def key_deactivate(key_id: str, account: str = ACCOUNT) -> None:
    _run("UpdateAccessKey", account, lambda s, ctx: s.accounts.update_access_key(ctx, key_id, "Inactive"))


@keys.command("activate")
def key_activate(key_id: str, account: str = ACCOUNT) -> None:
    _run("UpdateAccessKey", account, lambda s, ctx: s.accounts.update_access_key(ctx, key_id, "Active"))


@keys.command("delete")
def key_delete(key_id: str, account: str = ACCOUNT) -> None:
    _run("DeleteAccessKey", account, lambda s, ctx: s.accounts.delete_access_key(ctx, key_id))


@keys.command("rotate")
def key_rotate(key_id: str, account: str = ACCOUNT) -> None:
    """A new access key for the same principal; the old one is deactivated."""
    _run("RotateAccessKey", account, lambda s, ctx: s.accounts.rotate_access_key(ctx, key_id))


@keys.command("api-key")
def key_api(user: str = typer.Argument(None), days: int = typer.Option(None, help="expires after this many days"),
            account: str = ACCOUNT) -> None:
    """A long-term Bedrock API key (shown once)."""
    _run("CreateServiceSpecificCredential", account, lambda s, ctx: s.accounts.create_api_key(ctx, user, days))


@keys.command("kms-create")
def kms_create(description: str = "", account: str = ACCOUNT) -> None:
    """A customer-managed key (its ARN goes where Bedrock takes a KMS key, or in file uploads)."""
    _run("CreateKey", account, lambda s, ctx: s.keys.create_key(ctx, description))


@keys.command("kms-list")
def kms_list(account: str = ACCOUNT) -> None:
    _run("ListKeys", account, lambda s, ctx: s.keys.list_keys(ctx))


@keys.command("kms-disable")
def kms_disable(key: str, account: str = ACCOUNT) -> None:
    """What the key sealed cannot be read until it is enabled again."""
    _run("DisableKey", account, lambda s, ctx: s.keys.disable(ctx, key))


@keys.command("kms-enable")
def kms_enable(key: str, account: str = ACCOUNT) -> None:
    _run("EnableKey", account, lambda s, ctx: s.keys.enable(ctx, key))


@keys.command("kms-schedule-deletion")
def kms_schedule_deletion(key: str, days: int = typer.Option(30, help="waiting period, 7 to 30 days"),
                          account: str = ACCOUNT) -> None:
    """After the waiting period the key material is destroyed, and with it what it sealed."""
    _run("ScheduleKeyDeletion", account, lambda s, ctx: s.keys.schedule_deletion(ctx, key, days))


@keys.command("kms-cancel-deletion")
def kms_cancel_deletion(key: str, account: str = ACCOUNT) -> None:
    _run("CancelKeyDeletion", account, lambda s, ctx: s.keys.cancel_deletion(ctx, key))


@keys.command("rotate-master")
def rotate_master() -> None:
    """Re-wrap every secret under a new master key; a running server keeps serving throughout."""
    from outcrop.core.kms import rotate_master as rotate
    from outcrop.storage.db import make_engine, migrate, session_factory

    settings = load_settings()
    if settings.master_key is not None:
        console.print("[red]the master key comes from OUTCROP_MASTER_KEY; rotate it with a keyring file "
                      "(OUTCROP_MASTER_KEY_FILE), see docs/security.md[/red]")
        raise typer.Exit(2)
    with friendly_errors():
        engine = make_engine(settings.database_url)
        migrate(engine)
        count = rotate(session_factory(engine), settings.master_key_path)
    console.print(f"master key rotated; {count} wrapped secrets re-wrapped under the new key")


@policies.command("create")
def policy_create(name: str, document: Path = typer.Argument(..., help="policy JSON file"),
                  description: str = "", account: str = ACCOUNT) -> None:
    _run("CreatePolicy", account,
         lambda s, ctx: s.policies.create(ctx, name, document.read_text(), description))


@policies.command("list")
def policy_list(scope: str = typer.Option("All", help="All | AWS | Local"), account: str = ACCOUNT) -> None:
    _run("ListPolicies", account, lambda s, ctx: s.policies.list_policies(ctx, scope))


@policies.command("attach")
def policy_attach(user: str, policy_arn: str, role: bool = typer.Option(False, help="USER names a role"),
                  account: str = ACCOUNT) -> None:
    _run("AttachPolicy", account, lambda s, ctx: s.policies.attach(ctx, "role" if role else "user", user, policy_arn))


@policies.command("detach")
def policy_detach(user: str, policy_arn: str, role: bool = typer.Option(False, help="USER names a role"),
                  account: str = ACCOUNT) -> None:
    _run("DetachPolicy", account, lambda s, ctx: s.policies.detach(ctx, "role" if role else "user", user, policy_arn))
