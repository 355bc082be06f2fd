"""Repositories: queries in, rows out. No business rules here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from outcrop.storage.tables import AccessKey, Account, ApiKey, Principal


class IdentityRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def first_account(self) -> Account | None:
        return self.session.scalars(select(Account).order_by(Account.created_at).limit(1)).first()

    def add(self, *rows: Account | Principal | AccessKey | ApiKey) -> None:
        self.session.add_all(rows)

    def access_key(self, key_id: str) -> AccessKey | None:
        return self.session.get(AccessKey, key_id)

    def api_key_by_hash(self, token_sha256: str) -> ApiKey | None:
        return self.session.scalars(select(ApiKey).where(ApiKey.token_sha256 == token_sha256)).first()

    def principal(self, principal_id: str) -> Principal | None:
        return self.session.get(Principal, principal_id)

    def admin_access_key(self, account_id: str) -> AccessKey | None:
        query = (
            select(AccessKey)
            .join(Principal, Principal.id == AccessKey.principal_id)
            .where(AccessKey.account_id == account_id, Principal.is_admin.is_(True), AccessKey.status == "Active")
            .order_by(AccessKey.created_at)
        )
        return self.session.scalars(query).first()

    def touch_access_key(self, key_id: str, when: datetime) -> None:
        self.session.execute(update(AccessKey).where(AccessKey.id == key_id).values(last_used_at=when))

    def touch_api_key(self, key_id: str, when: datetime) -> None:
        self.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when))
