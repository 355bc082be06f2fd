"""Customer-managed IAM policies and their attachment to users and roles."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from outcrop.core.access import AccessService, iam_arn, role_variant
from outcrop.core.accounts import AccountsService, caller_of, check_name, find_principal, iso
from outcrop.core.governance import CallContext
from outcrop.core.identity import random_id
from outcrop.core.policy import MANAGED, Policy
from outcrop.errors import Conflict, Invalid, NotFound
from outcrop.storage.repositories import AccountScope
from outcrop.storage.tables import PolicyAttachment, PolicyDocument

MAX_ATTACHED = 10  # IAM's default quota of managed policies per user or role


class PoliciesService:
    def __init__(self, accounts: AccountsService, access: AccessService) -> None:
        self.accounts = accounts
        self.access = access
        self.sessions = accounts.sessions

    def create(self, ctx: CallContext, name: str, document: object, description: str = "") -> dict[str, Any]:
        caller = caller_of(ctx)
        check_name(name, "PolicyName")
        if not isinstance(description, str) or len(description) > 1000:
            raise Invalid("Description must be a string of at most 1000 characters")
        policy = Policy.parse(document if isinstance(document, (str, dict)) else json.dumps(document))
        self.access.require(ctx, iam_arn(caller.account_id, "policy", name))
        with self.accounts.write(caller.account_id) as scope:
            if scope.first(PolicyDocument, PolicyDocument.name == name) is not None:
                raise Conflict(f"A policy called {name} already exists. Duplicate names are not allowed.")
            row = PolicyDocument(id=random_id("ANPA", 17), name=name, description=description,
                                 document=json.dumps(policy.document), created_at=datetime.now(UTC))
            scope.add(row)
        return _customer(row)

    def get(self, ctx: CallContext, arn: str) -> dict[str, Any]:
        caller = caller_of(ctx)
        self.access.require(ctx, arn)
        if arn in MANAGED:
            return _managed(arn)
        with self.sessions() as session:
            return _customer(self._row(AccountScope(session, caller.account_id), arn))

    def list_policies(self, ctx: CallContext, scope_filter: str = "All") -> list[dict[str, Any]]:
        caller = caller_of(ctx)
        if scope_filter not in ("All", "AWS", "Local"):
            raise Invalid("Scope must be one of All, AWS, Local")
        self.access.require(ctx, iam_arn(caller.account_id, "policy", "*"))
        rows = [_managed(arn) for arn in MANAGED] if scope_filter != "Local" else []
        if scope_filter != "AWS":
            with self.sessions() as session:
                rows += [_customer(r) for r in AccountScope(session, caller.account_id).rows(PolicyDocument)]
        return rows

    def delete(self, ctx: CallContext, arn: str) -> None:
        caller = caller_of(ctx)
        self.access.require(ctx, arn)
        with self.accounts.write(caller.account_id) as scope:
            row = self._row(scope, arn)
            if scope.first(PolicyAttachment, PolicyAttachment.policy_arn == arn) is not None:
                raise Conflict("Cannot delete a policy attached to entities: detach it first.")
            scope.delete(row)

    def attach(self, ctx: CallContext, kind: str, name: str, arn: str) -> None:
        caller = caller_of(ctx)
        self.access.require(ctx, iam_arn(caller.account_id, kind, name), role_variant("iam:AttachUserPolicy", kind))
        with self.accounts.write(caller.account_id) as scope:
            principal = find_principal(scope, kind, name)
            if arn not in MANAGED:
                self._row(scope, arn)
            attached = scope.attached(principal.id)
            if arn in attached:
                return
            if len(attached) >= MAX_ATTACHED:
                raise Conflict(f"Cannot exceed quota for PoliciesPerUser: {MAX_ATTACHED}")
            scope.add(PolicyAttachment(principal_id=principal.id, policy_arn=arn))

    def detach(self, ctx: CallContext, kind: str, name: str, arn: str) -> None:
        caller = caller_of(ctx)
        self.access.require(ctx, iam_arn(caller.account_id, kind, name), role_variant("iam:DetachUserPolicy", kind))
        with self.accounts.write(caller.account_id) as scope:
            principal = find_principal(scope, kind, name)
            row = scope.first(PolicyAttachment, PolicyAttachment.principal_id == principal.id,
                              PolicyAttachment.policy_arn == arn)
            if row is None:
                raise NotFound(f"Policy {arn} was not found attached to {kind} {name}.")
            scope.delete(row)

    def list_attached(self, ctx: CallContext, kind: str, name: str) -> list[dict[str, Any]]:
        caller = caller_of(ctx)
        self.access.require(ctx, iam_arn(caller.account_id, kind, name),
                            role_variant("iam:ListAttachedUserPolicies", kind))
        with self.sessions() as session:
            scope = AccountScope(session, caller.account_id)
            return [{"PolicyName": arn.rsplit("/", 1)[-1], "PolicyArn": arn}
                    for arn in scope.attached(find_principal(scope, kind, name).id)]

    @staticmethod
    def _row(scope: AccountScope, arn: str) -> PolicyDocument:
        prefix = iam_arn(scope.account_id, "policy", "")
        name = arn[len(prefix):] if isinstance(arn, str) and arn.startswith(prefix) else None
        row = scope.first(PolicyDocument, PolicyDocument.name == name) if name else None
        if row is None:
            raise NotFound(f"Policy {arn} does not exist or is not attachable.")
        return row


def _managed(arn: str) -> dict[str, Any]:
    return {"PolicyName": arn.rsplit("/", 1)[-1], "Arn": arn, "Scope": "AWS", "DefaultVersionId": "v1",
            "Document": MANAGED[arn].document}


def _customer(row: PolicyDocument) -> dict[str, Any]:
    return {"PolicyName": row.name, "PolicyId": row.id, "Arn": iam_arn(row.account_id, "policy", row.name),
            "Scope": "Local", "DefaultVersionId": "v1", "Description": row.description,
            "CreateDate": iso(row.created_at), "Document": json.loads(row.document)}
