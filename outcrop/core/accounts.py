"""Tenants and their principals: accounts, users, roles, access keys and Bedrock API keys.

Every method takes the call's context first and checks it before touching anything; every query goes
through the caller's AccountScope, so another account's rows are simply not found.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from outcrop.core.access import AccessService, iam_arn
from outcrop.core.governance import CallContext
from outcrop.core.identity import (
    Credentials,
    IdentityService,
    hash_token,
    new_api_key,
    new_secret_access_key,
    random_id,
)
from outcrop.errors import Conflict, Invalid, NotFound
from outcrop.storage.repositories import Accounts, AccountScope
from outcrop.storage.tables import AccessKey, Account, ApiKey, Principal

_NAME_CHARS = set(string.ascii_letters + string.digits + "+=,.@_-")
_KINDS = {"user": "AIDA", "role": "AROA"}


def check_name(value: object, what: str = "name") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or set(value) - _NAME_CHARS:
        raise Invalid(f"1 validation error detected: Value at '{what}' failed to satisfy constraint: Member must "
                      "have length between 1 and 64 and match [\\w+=,.@-]+")
    return value


def iso(value: datetime | None) -> str | None:
    return value.replace(tzinfo=value.tzinfo or UTC).isoformat() if value is not None else None


class AccountsService:
    def __init__(self, identity: IdentityService, access: AccessService) -> None:
        self.identity = identity
        self.access = access
        self.sessions = identity.sessions
        self.master = identity.master

    @contextmanager
    def write(self, account_id: str) -> Iterator[AccountScope]:
        """One transaction in one account; bumps the identity generation so every cache notices."""
        with self.sessions.begin() as session:
            yield AccountScope(session, account_id)
            self.identity.generation.bump(session)
        self.identity.changed()

    # -- accounts (the service operator's) ---------------------------------------------------------

    def bootstrap(self) -> Credentials | None:
        """Create the first account, whose admin is the service operator, once. Returns the new secrets."""
        with self.sessions() as session:
            if Accounts(session).first() is not None:
                return None
        created = self._create_account("default", operator=True)
        creds = Credentials(created["Account"]["AccountId"], created["AccessKey"]["AccessKeyId"],
                            created["AccessKey"]["SecretAccessKey"], created["ApiKey"]["ServiceApiKeyValue"])
        self.identity.write_credentials(creds)
        return creds

    def create_account(self, ctx: CallContext, name: str) -> dict[str, Any]:
        self.access.require(ctx)
        return self._create_account(check_name(name, "AccountName"), operator=False)

    def _create_account(self, name: str, operator: bool) -> dict[str, Any]:
        now = datetime.now(UTC)
        account = Account(id="".join(secrets.choice(string.digits) for _ in range(12)), name=name, created_at=now,
                          status="Active")
        with self.sessions.begin() as session:
            Accounts(session).add(account)
            scope = AccountScope(session, account.id)
            admin = Principal(id=random_id("AIDA", 17), name="admin", kind="user", is_admin=True,
                              is_operator=operator, created_at=now)
            scope.add(admin)
            key = self._new_access_key(scope, admin)
            api = self._new_api_key(scope, admin, None)
            self.identity.generation.bump(session)
        return {"Account": _account(account), "AccessKey": key, "ApiKey": api}

    def list_accounts(self, ctx: CallContext) -> list[dict[str, Any]]:
        self.access.require(ctx)
        with self.sessions() as session:
            return [_account(a) for a in Accounts(session).all()]

    def update_account(self, ctx: CallContext, account_id: str, status: str) -> dict[str, Any]:
        """Suspend (every key of the account stops working) or reactivate a tenant."""
        self.access.require(ctx)
        if status not in ("Active", "Suspended"):
            raise Invalid("Status must be Active or Suspended")
        with self.sessions.begin() as session:
            account = Accounts(session).get(account_id)
            if account is None:
                raise NotFound(f"Account {account_id} does not exist.")
            if ctx.caller is not None and account.id == ctx.caller.account_id and status != "Active":
                raise Conflict("An operator cannot suspend its own account.")
            account.status = status
            self.identity.generation.bump(session)
        self.identity.changed()
        return _account(account)

    def get_account(self, ctx: CallContext) -> dict[str, Any]:
        caller = caller_of(ctx)
        self.access.require(ctx)
        with self.sessions() as session:
            account = Accounts(session).get(caller.account_id)
            assert account is not None
            scope = AccountScope(session, account.id)
            users = len(scope.rows(Principal, Principal.kind == "user"))
            roles = len(scope.rows(Principal, Principal.kind == "role"))
        return {**_account(account), "Users": users, "Roles": roles, "Caller": caller.arn}

    # -- users and roles -----------------------------------------------------------------------------

    def create_principal(self, ctx: CallContext, kind: str, name: str) -> dict[str, Any]:
        caller = caller_of(ctx)
        check_name(name, "UserName" if kind == "user" else "RoleName")
        self.access.require(ctx, iam_arn(caller.account_id, kind, name))
        with self.write(caller.account_id) as scope:
            if scope.principal(kind, name) is not None:
                raise Conflict(f"{kind.title()} with name {name} already exists.")
            row = Principal(id=random_id(_KINDS[kind], 17), name=name, kind=kind, is_admin=False,
                            is_operator=False, created_at=datetime.now(UTC))
            scope.add(row)
        return _principal(row)

    def get_principal(self, ctx: CallContext, kind: str, name: str) -> dict[str, Any]:
        caller = caller_of(ctx)
        self.access.require(ctx, iam_arn(caller.account_id, kind, name))
        with self.sessions() as session:
            scope = AccountScope(session, caller.account_id)
            row = find_principal(scope, kind, name)
            return {**_principal(row), "AttachedPolicies": scope.attached(row.id)}

    def list_principals(self, ctx: CallContext, kind: str) -> list[dict[str, Any]]:
        caller = caller_of(ctx)
        self.access.require(ctx, iam_arn(caller.account_id, kind, "*"))
        with self.sessions() as session:
            return [_principal(p) for p in AccountScope(session, caller.account_id).rows(Principal, Principal.kind == kind)]

    def delete_principal(self, ctx: CallContext, kind: str, name: str) -> None:
        """Deletes the principal with its keys and attachments (one step, unlike IAM's DeleteConflict)."""
        caller = caller_of(ctx)
        self.access.require(ctx, iam_arn(caller.account_id, kind, name))
        with self.write(caller.account_id) as scope:
            row = find_principal(scope, kind, name)
            if row.is_admin:
                raise Conflict("The account's admin cannot be deleted.")
            for model in (AccessKey, ApiKey):
                for key in scope.rows(model, model.principal_id == row.id):
                    scope.delete(key)
            scope.detach_all(row.id)
            scope.delete(row)

    # -- access keys ---------------------------------------------------------------------------------

    def create_access_key(self, ctx: CallContext, user_name: str | None = None,
                          role_name: str | None = None) -> dict[str, Any]:
        caller = caller_of(ctx)
        kind, name = owner_ref(ctx, user_name, role_name)
        self.access.require(ctx, iam_arn(caller.account_id, kind, name))
        with self.write(caller.account_id) as scope:
            return self._new_access_key(scope, find_principal(scope, kind, name))

    def list_access_keys(self, ctx: CallContext, user_name: str | None = None,
                         role_name: str | None = None) -> list[dict[str, Any]]:
        return self._list_keys(ctx, AccessKey, _access_key, user_name, role_name)

    def update_access_key(self, ctx: CallContext, key_id: str, status: str) -> dict[str, Any]:
        return self._set_status(ctx, AccessKey, _access_key, key_id, status)

    def delete_access_key(self, ctx: CallContext, key_id: str) -> None:
        with self._key(ctx, AccessKey, key_id, delete=True):
            pass

    def rotate_access_key(self, ctx: CallContext, key_id: str) -> dict[str, Any]:
        """A new key for the same principal; the old one is deactivated in the same transaction."""
        with self._key(ctx, AccessKey, key_id) as (scope, key, owner):
            key.status = "Inactive"
            return self._new_access_key(scope, owner)

    # -- Bedrock API keys (IAM service-specific credentials) -----------------------------------------

    def create_api_key(self, ctx: CallContext, user_name: str | None = None, expires_in_days: int | None = None,
                       role_name: str | None = None) -> dict[str, Any]:
        caller = caller_of(ctx)
        kind, name = owner_ref(ctx, user_name, role_name)
        if expires_in_days is not None and not (isinstance(expires_in_days, int) and 1 <= expires_in_days <= 36600):
            raise Invalid("CredentialAgeDays must be an integer between 1 and 36600")
        self.access.require(ctx, iam_arn(caller.account_id, kind, name))
        with self.write(caller.account_id) as scope:
            return self._new_api_key(scope, find_principal(scope, kind, name), expires_in_days)

    def list_api_keys(self, ctx: CallContext, user_name: str | None = None,
                      role_name: str | None = None) -> list[dict[str, Any]]:
        return self._list_keys(ctx, ApiKey, _api_key, user_name, role_name)

    def update_api_key(self, ctx: CallContext, key_id: str, status: str) -> dict[str, Any]:
        return self._set_status(ctx, ApiKey, _api_key, key_id, status)

    def delete_api_key(self, ctx: CallContext, key_id: str) -> None:
        with self._key(ctx, ApiKey, key_id, delete=True):
            pass

    # -- helpers -------------------------------------------------------------------------------------

    def _list_keys(self, ctx: CallContext, model: type[AccessKey] | type[ApiKey], render: Any,
                   user_name: str | None, role_name: str | None) -> list[dict[str, Any]]:
        caller = caller_of(ctx)
        kind, name = owner_ref(ctx, user_name, role_name)
        self.access.require(ctx, iam_arn(caller.account_id, kind, name))
        with self.sessions() as session:
            scope = AccountScope(session, caller.account_id)
            owner = find_principal(scope, kind, name)
            return [render(k, owner) for k in scope.rows(model, model.principal_id == owner.id)]

    def _set_status(self, ctx: CallContext, model: type[AccessKey] | type[ApiKey], render: Any, key_id: str,
                    status: str) -> dict[str, Any]:
        if status not in ("Active", "Inactive"):
            raise Invalid("Status must be Active or Inactive")
        with self._key(ctx, model, key_id) as (_, key, owner):
            key.status = status
            return render(key, owner)  # type: ignore[no-any-return]

    @contextmanager
    def _key(self, ctx: CallContext, model: type[AccessKey] | type[ApiKey], key_id: str,
             delete: bool = False) -> Iterator[tuple[AccountScope, Any, Principal]]:
        caller = caller_of(ctx)
        what = "Access Key" if model is AccessKey else "Service-Specific Credential"
        with self.write(caller.account_id) as scope:
            key = scope.get(model, key_id) if isinstance(key_id, str) else None
            owner = scope.get(Principal, key.principal_id) if key is not None else None
            if key is None or owner is None:
                raise NotFound(f"The {what} with id {key_id} cannot be found.")
            self.access.require(ctx, iam_arn(caller.account_id, owner.kind, owner.name))
            yield scope, key, owner
            if delete:
                scope.delete(key)

    def _new_access_key(self, scope: AccountScope, owner: Principal) -> dict[str, Any]:
        key_id, secret = random_id("AKIA", 16), new_secret_access_key()
        row = AccessKey(id=key_id, principal_id=owner.id, status="Active", created_at=datetime.now(UTC),
                        secret_wrapped=self.master.wrap(secret.encode(), key_id.encode()))
        scope.add(row)
        return {**_access_key(row, owner), "SecretAccessKey": secret}

    def _new_api_key(self, scope: AccountScope, owner: Principal, days: int | None) -> dict[str, Any]:
        token, now = new_api_key(), datetime.now(UTC)
        row = ApiKey(id=random_id("ACCA", 17), principal_id=owner.id, token_sha256=hash_token(token),
                     prefix=token[:8], status="Active", created_at=now,
                     expires_at=now + timedelta(days=days) if days else None)
        scope.add(row)
        return {**_api_key(row, owner), "ServiceApiKeyValue": token}


def caller_of(ctx: CallContext):  # type: ignore[no-untyped-def]
    if ctx.caller is None:
        raise Invalid("this operation acts as a principal; run it through the API with credentials")
    return ctx.caller


def owner_ref(ctx: CallContext, user_name: str | None, role_name: str | None) -> tuple[str, str]:
    """Whose keys: the named user or role, or the caller itself (as IAM does when UserName is omitted).

    Roles hold keys directly here (a service's long-lived identity); STS-style assumed sessions are not built."""
    if user_name is not None and role_name is not None:
        raise Invalid("Give UserName or RoleName, not both")
    if role_name is not None:
        return "role", role_name
    if user_name is not None:
        return "user", user_name
    caller = caller_of(ctx)
    return caller.kind, caller.principal_name


def find_principal(scope: AccountScope, kind: str, name: str) -> Principal:
    row = scope.principal(kind, name) if isinstance(name, str) else None
    if row is None:
        raise NotFound(f"The {kind} with name {name} cannot be found.")
    return row


def _account(row: Account) -> dict[str, Any]:
    return {"AccountId": row.id, "AccountName": row.name, "Status": row.status, "CreateDate": iso(row.created_at)}


def _principal(row: Principal) -> dict[str, Any]:
    name_key, id_key = ("UserName", "UserId") if row.kind == "user" else ("RoleName", "RoleId")
    return {name_key: row.name, id_key: row.id, "Arn": iam_arn(row.account_id, row.kind, row.name),
            "CreateDate": iso(row.created_at), "IsAccountAdmin": row.is_admin}


def _owner(owner: Principal) -> dict[str, str]:
    return {"UserName" if owner.kind == "user" else "RoleName": owner.name}


def _access_key(row: AccessKey, owner: Principal) -> dict[str, Any]:
    return {**_owner(owner), "AccessKeyId": row.id, "Status": row.status, "CreateDate": iso(row.created_at),
            "LastUsedDate": iso(row.last_used_at)}


def _api_key(row: ApiKey, owner: Principal) -> dict[str, Any]:
    return {**_owner(owner), "ServiceSpecificCredentialId": row.id, "ServiceName": "bedrock.amazonaws.com",
            "ServiceUserName": f"{owner.name}-at-{row.account_id}", "Status": row.status, "CreateDate": iso(row.created_at),
            "ExpirationDate": iso(row.expires_at), "LastUsedDate": iso(row.last_used_at), "Prefix": row.prefix}
