"""Repositories: queries in, rows out. No business rules here.

Customer resources are only reachable through AccountScope, which binds the account when it is
obtained: there is no query for a resource that could forget to filter by account.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from outcrop.errors import Conflict
from outcrop.storage.tables import (
    AccessKey,
    Account,
    ApiKey,
    Base,
    Generation,
    PolicyAttachment,
    Principal,
)

Row = TypeVar("Row", bound=Base)


class AuthLookup:
    """Lookups by key ID or token hash, before the caller's account is known (authentication only)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def access_key(self, key_id: str) -> AccessKey | None:
        return self.session.get(AccessKey, key_id)

    def api_key_by_hash(self, token_sha256: str) -> ApiKey | None:
        return self.session.scalars(select(ApiKey).where(ApiKey.token_sha256 == token_sha256)).first()

    def principal(self, principal_id: str) -> Principal | None:
        return self.session.get(Principal, principal_id)

    def account(self, account_id: str) -> Account | None:
        return self.session.get(Account, account_id)

    def touch_access_key(self, key_id: str, when: datetime) -> None:
        self.session.execute(update(AccessKey).where(AccessKey.id == key_id).values(last_used_at=when))

    def touch_api_key(self, key_id: str, when: datetime) -> None:
        self.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when))


class Accounts:
    """The list of tenants, for the service operator."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def first(self) -> Account | None:
        return self.session.scalars(select(Account).order_by(Account.created_at).limit(1)).first()

    def all(self) -> Sequence[Account]:
        return self.session.scalars(select(Account).order_by(Account.created_at)).all()

    def get(self, account_id: str) -> Account | None:
        return self.session.get(Account, account_id)

    def add(self, account: Account) -> None:
        self.session.add(account)
        self.session.flush()

    def rows_of(self, model: type[Row]) -> Sequence[Row]:
        """Every row of a table across accounts: for master-key rotation, which re-wraps them all."""
        return self.session.scalars(select(model)).all()


@contextmanager
def unique(message: str) -> Iterator[None]:
    """A unique constraint violated inside the block (a name taken) becomes Conflict(message)."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(message) from exc


class AccountScope:
    """One account's resources. Rows from other accounts are invisible: `get` answers None for them."""

    def __init__(self, session: Session, account_id: str) -> None:
        self.session = session
        self.account_id = account_id

    def get(self, model: type[Row], row_id: str) -> Row | None:
        row = self.session.get(model, row_id)
        return row if row is not None and row.account_id == self.account_id else None  # type: ignore[attr-defined]

    def rows(self, model: type[Row], *where: Any, order_by: Any = None) -> Sequence[Row]:
        query = select(model).where(model.account_id == self.account_id, *where)  # type: ignore[attr-defined]
        return self.session.scalars(query.order_by(order_by if order_by is not None else model.created_at)).all()  # type: ignore[attr-defined]

    def first(self, model: type[Row], *where: Any) -> Row | None:
        return self.session.scalars(
            select(model).where(model.account_id == self.account_id, *where).limit(1)).first()  # type: ignore[attr-defined]

    def add(self, *rows: Base) -> None:
        for row in rows:
            owner = getattr(row, "account_id", None)
            if owner not in (None, self.account_id):
                raise ValueError(f"a row of account {owner} cannot be added through account {self.account_id}")
            row.account_id = self.account_id  # type: ignore[attr-defined]
        self.session.add_all(rows)
        self.session.flush()

    def delete(self, row: Base) -> None:
        assert row.account_id == self.account_id  # type: ignore[attr-defined]
        self.session.delete(row)
        self.session.flush()

    def principal(self, kind: str, name: str) -> Principal | None:
        return self.first(Principal, Principal.kind == kind, Principal.name == name)

    def attached(self, principal_id: str) -> list[str]:
        query = select(PolicyAttachment.policy_arn).where(PolicyAttachment.account_id == self.account_id,
                                                          PolicyAttachment.principal_id == principal_id)
        return sorted(self.session.scalars(query).all())

    def detach_all(self, principal_id: str) -> None:
        self.session.execute(delete(PolicyAttachment).where(PolicyAttachment.account_id == self.account_id,
                                                            PolicyAttachment.principal_id == principal_id))

    def admin_access_key(self) -> AccessKey | None:
        query = (
            select(AccessKey)
            .join(Principal, Principal.id == AccessKey.principal_id)
            .where(AccessKey.account_id == self.account_id, Principal.is_admin.is_(True), AccessKey.status == "Active")
            .order_by(AccessKey.created_at)
        )
        return self.session.scalars(query).first()


def bump(session: Session, name: str) -> None:
    """Advance a cache generation in the caller's transaction."""
    row = session.get(Generation, name)
    if row is None:
        session.add(Generation(name=name, value=1))
    else:
        row.value += 1


def generation(session: Session, name: str) -> int:
    row = session.get(Generation, name)
    return row.value if row is not None else 0


def checkpoint(session: Session) -> None:
    """Fold SQLite's write-ahead log back into the database (a no-op elsewhere)."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
