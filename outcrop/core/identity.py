"""Who is calling: key lookups for authentication (cached), secrets, and the first start's bootstrap."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.cache import Generation
from outcrop.core.crypto import MasterKeyring
from outcrop.errors import UnrecognizedClient
from outcrop.storage.repositories import AuthLookup

_UPPER_DIGITS = string.ascii_uppercase + "234567"
_TOUCH_EVERY_S = 60.0
INVALID_TOKEN = "The security token included in the request is invalid."


@dataclass(frozen=True)
class Caller:
    """The authenticated principal of one request."""

    account_id: str
    principal_id: str
    principal_name: str
    is_admin: bool
    access_key_id: str | None = None
    auth: str = "sigv4"  # sigv4 | api_key
    kind: str = "user"  # user | role
    is_operator: bool = False

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:{self.kind}/{self.principal_name}"


@dataclass(frozen=True)
class Credentials:
    """The secrets shown once, at first start (and kept in a 0600 file for `outcrop env`)."""

    account_id: str
    access_key_id: str
    secret_access_key: str
    api_key: str


def random_id(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(_UPPER_DIGITS) for _ in range(length))


def new_secret_access_key() -> str:
    return secrets.token_urlsafe(30)[:40]


def new_api_key() -> str:
    return "ABSK" + secrets.token_urlsafe(48)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class IdentityService:
    """Resolves access keys and API keys to callers. Caches both; any identity change clears the caches."""

    def __init__(self, sessions: sessionmaker[Session], master: MasterKeyring, credentials_path: Path) -> None:
        self.sessions = sessions
        self.master = master
        self.credentials_path = credentials_path
        self.generation = Generation(sessions, "identity")
        self._secrets: dict[str, tuple[Caller, str]] = {}
        self._api_keys: dict[str, tuple[Caller, datetime | None, str]] = {}
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()
        self.on_change: list[Callable[[], None]] = []  # callables run after any identity change (policy caches)

    def changed(self) -> None:
        """Forget every cached key: called after a change in this process, or when another process made one."""
        self._secrets.clear()
        self._api_keys.clear()
        for hook in self.on_change:
            hook()

    def refresh(self) -> None:
        """Notice changes another process made (looks at the database at most once a second)."""
        if self.generation.changed():
            self.changed()

    def credentials(self) -> Credentials | None:
        if not self.credentials_path.exists():
            return None
        return Credentials(**json.loads(self.credentials_path.read_text()))

    def write_credentials(self, creds: Credentials) -> None:
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
        self.refresh()
        cached = self._secrets.get(access_key_id)
        if cached is None:
            with self.sessions() as session:
                lookup = AuthLookup(session)
                key = lookup.access_key(access_key_id)
                if key is None or key.status != "Active":
                    raise UnrecognizedClient(INVALID_TOKEN)
                caller = self._caller(lookup, key.principal_id, key.id, "sigv4")
                secret = self.master.unwrap(key.secret_wrapped, key.id.encode()).decode()
            cached = self._secrets[access_key_id] = (caller, secret)
        self._touch("ak:" + access_key_id)
        return cached

    def api_key_caller(self, token: str, digest: str | None = None) -> Caller:
        digest = digest or hash_token(token)
        self.refresh()
        cached = self._api_keys.get(digest)
        if cached is None:
            with self.sessions() as session:
                lookup = AuthLookup(session)
                key = lookup.api_key_by_hash(digest)
                if key is None or key.status != "Active":
                    raise UnrecognizedClient(INVALID_TOKEN)
                caller = self._caller(lookup, key.principal_id, None, "api_key")
                cached = self._api_keys[digest] = (caller, key.expires_at, key.id)
        caller, expires_at, key_id = cached
        if expires_at is not None and expires_at.replace(tzinfo=expires_at.tzinfo or UTC) < datetime.now(UTC):
            raise UnrecognizedClient("The API key has expired.")
        self._touch("api:" + key_id)
        return caller

    def _caller(self, lookup: AuthLookup, principal_id: str, access_key_id: str | None, auth: str) -> Caller:
        principal = lookup.principal(principal_id)
        account = lookup.account(principal.account_id) if principal is not None else None
        if principal is None or account is None or account.status != "Active":
            raise UnrecognizedClient(INVALID_TOKEN)
        return Caller(account.id, principal.id, principal.name, principal.is_admin, access_key_id, auth,
                      principal.kind, principal.is_operator)

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
            lookup = AuthLookup(session)
            when = datetime.now(UTC)
            if kind == "ak":
                lookup.touch_access_key(key_id, when)
            else:
                lookup.touch_api_key(key_id, when)
