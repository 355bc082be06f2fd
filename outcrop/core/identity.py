"""Accounts, principals and their keys: bootstrap of the default account, key lookup for authentication."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import string
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.crypto import MasterKey
from outcrop.errors import UnrecognizedClient
from outcrop.storage.repositories import IdentityRepository
from outcrop.storage.tables import AccessKey, Account, ApiKey, Principal

_UPPER_DIGITS = string.ascii_uppercase + "234567"
_TOUCH_EVERY_S = 60.0


@dataclass(frozen=True)
class Caller:
    """The authenticated principal of one request."""

    account_id: str
    principal_id: str
    principal_name: str
    is_admin: bool
    access_key_id: str | None = None
    auth: str = "sigv4"  # sigv4 | api_key

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:user/{self.principal_name}"


@dataclass(frozen=True)
class Credentials:
    """The secrets shown once, at first start (and kept in a 0600 file for `outcrop env`)."""

    account_id: str
    access_key_id: str
    secret_access_key: str
    api_key: str


def _random_id(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(_UPPER_DIGITS) for _ in range(length))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class IdentityService:
    def __init__(self, sessions: sessionmaker[Session], master: MasterKey, credentials_path: Path) -> None:
        self.sessions = sessions
        self.master = master
        self.credentials_path = credentials_path
        self._secrets: dict[str, tuple[Caller, str]] = {}
        self._api_keys: dict[str, tuple[Caller, datetime | None, str]] = {}
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def bootstrap(self) -> Credentials | None:
        """Create the default account with an admin access key and API key, once. Returns new secrets."""
        with self.sessions.begin() as session:
            repo = IdentityRepository(session)
            if repo.first_account() is not None:
                return None
            now = datetime.now(UTC)
            account = Account(id="".join(secrets.choice(string.digits) for _ in range(12)), name="default",
                              created_at=now)
            admin = Principal(id=_random_id("AIDA", 17), account_id=account.id, name="admin", kind="user",
                              is_admin=True, created_at=now)
            creds = Credentials(
                account_id=account.id,
                access_key_id=_random_id("AKIA", 16),
                secret_access_key=secrets.token_urlsafe(30)[:40],
                api_key="ABSK" + secrets.token_urlsafe(48),
            )
            access = AccessKey(id=creds.access_key_id, account_id=account.id, principal_id=admin.id,
                               secret_wrapped=self.master.wrap(creds.secret_access_key.encode(),
                                                               creds.access_key_id.encode()),
                               status="Active", created_at=now)
            api = ApiKey(id=_random_id("BAK", 17), account_id=account.id, principal_id=admin.id,
                         token_sha256=hash_token(creds.api_key), prefix=creds.api_key[:8], status="Active",
                         created_at=now)
            repo.add(account)
            session.flush()
            repo.add(admin)
            session.flush()
            repo.add(access, api)
        self._write_credentials(creds)
        return creds

    def credentials(self) -> Credentials | None:
        if not self.credentials_path.exists():
            return None
        return Credentials(**json.loads(self.credentials_path.read_text()))

    def _write_credentials(self, creds: Credentials) -> None:
        self.credentials_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.credentials_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(creds), out, indent=2)
        tmp.replace(self.credentials_path)

    def is_cached(self, access_key_id: str | None = None, token_digest: str | None = None) -> bool:
        """True when the key resolves without touching the database."""
        return access_key_id in self._secrets or token_digest in self._api_keys

    def access_key_secret(self, access_key_id: str) -> tuple[Caller, str]:
        """The caller and secret behind an access key ID (for SigV4), or UnrecognizedClient."""
        cached = self._secrets.get(access_key_id)
        if cached is None:
            with self.sessions() as session:
                repo = IdentityRepository(session)
                key = repo.access_key(access_key_id)
                if key is None or key.status != "Active":
                    raise UnrecognizedClient("The security token included in the request is invalid.")
                principal = repo.principal(key.principal_id)
                assert principal is not None
                secret = self.master.unwrap(key.secret_wrapped, key.id.encode()).decode()
            caller = Caller(key.account_id, principal.id, principal.name, principal.is_admin, key.id, "sigv4")
            cached = self._secrets[access_key_id] = (caller, secret)
        self._touch("ak:" + access_key_id)
        return cached

    def api_key_caller(self, token: str, digest: str | None = None) -> Caller:
        digest = digest or hash_token(token)
        cached = self._api_keys.get(digest)
        if cached is None:
            with self.sessions() as session:
                repo = IdentityRepository(session)
                key = repo.api_key_by_hash(digest)
                if key is None or key.status != "Active":
                    raise UnrecognizedClient("The security token included in the request is invalid.")
                principal = repo.principal(key.principal_id)
                assert principal is not None
                caller = Caller(key.account_id, principal.id, principal.name, principal.is_admin, None, "api_key")
                cached = self._api_keys[digest] = (caller, key.expires_at, key.id)
        caller, expires_at, key_id = cached
        if expires_at is not None and expires_at.replace(tzinfo=expires_at.tzinfo or UTC) < datetime.now(UTC):
            raise UnrecognizedClient("The API key has expired.")
        self._touch("api:" + key_id)
        return caller

    def _touch(self, key: str) -> None:
        """Record last use, at most once a minute per key, off the request path."""
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(key, -_TOUCH_EVERY_S) < _TOUCH_EVERY_S:
                return
            self._touched[key] = now
        threading.Thread(target=self._write_touch, args=(key,), daemon=True).start()

    def _write_touch(self, key: str) -> None:
        kind, key_id = key.split(":", 1)
        with self.sessions.begin() as session:
            repo = IdentityRepository(session)
            when = datetime.now(UTC)
            if kind == "ak":
                repo.touch_access_key(key_id, when)
            else:
                repo.touch_api_key(key_id, when)
