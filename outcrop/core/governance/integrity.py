"""Trail integrity: signed digests of each account's chain head, and verification of the whole trail.

The analogue of CloudTrail log-file integrity validation. Each event's hash covers the previous hash and
the event itself, so an edited, deleted or reordered record breaks the chain; a periodic Ed25519-signed
digest pins the head, so the tail cannot be silently truncated or rewritten before it either.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import AccessService
from outcrop.core.governance import CallContext
from outcrop.core.governance.audit import GENESIS, chain_hash
from outcrop.errors import OutcropError
from outcrop.storage.tables import AuditDigest, AuditEvent


def _signing_key(path: Path):  # type: ignore[no-untyped-def]
    """The Ed25519 key that signs digests: created 0600 at first use, refused when others can read it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.Raw,
                                                         serialization.PrivateFormat.Raw,
                                                         serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
    if path.stat().st_mode & 0o077:
        raise OutcropError(f"{path} is readable by others; run: chmod 600 {path}")
    return Ed25519PrivateKey.from_private_bytes(path.read_bytes())


def digest_message(account_id: str, seq: int, head: str, created_at: datetime) -> bytes:
    return f"outcrop-audit-digest:v1:{account_id}:{seq}:{head}:{created_at.strftime('%Y-%m-%dT%H:%M:%SZ')}".encode()


class DigestSigner:
    """Signs each account's chain head after new events, at most once per `every` seconds per account."""

    def __init__(self, sessions: sessionmaker[Session], key_path: Path, every: float = 300.0) -> None:
        self.sessions = sessions
        self.key = _signing_key(key_path)
        self.every = every
        self._last: dict[str, float] = {}
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def public_key_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def touched(self, accounts: set[str]) -> None:
        """Called by the trail's writer after each batch."""
        now = time.monotonic()
        with self._lock:
            self._pending |= accounts
            due = {a for a in self._pending if now - self._last.get(a, -self.every) >= self.every}
            self._pending -= due
        for account_id in due:
            self.sign(account_id)
            self._last[account_id] = now

    def sign_pending(self) -> None:
        """At shutdown (and on demand): sign every account that has unsigned events."""
        with self._lock:
            pending, self._pending = self._pending, set()
        for account_id in pending:
            self.sign(account_id)

    def verify_trail(self, ctx: CallContext, access: AccessService) -> tuple[int, list[Finding]]:
        """The caller's own account's trail; an operator's (or the local CLI's) covers every account."""
        access.require(ctx)
        caller = ctx.caller
        account = None if caller is None or caller.is_operator else caller.account_id
        return verify(self.sessions, self.key.public_key(), account)

    def sign(self, account_id: str, upto: int | None = None) -> AuditDigest | None:
        """Sign the chain head (or record #`upto`)."""
        with self.sessions.begin() as session:
            query = select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.account_id == account_id)
            if upto is not None:
                query = query.where(AuditEvent.seq <= upto)
            head = session.execute(query.order_by(AuditEvent.seq.desc()).limit(1)).first()
            if head is None:
                return None
            now = datetime.now(UTC).replace(microsecond=0)
            digest = AuditDigest(id=str(uuid.uuid4()), account_id=account_id, seq=head[0], hash=head[1],
                                 created_at=now, signature=self.key.sign(digest_message(account_id, head[0],
                                                                                        head[1], now)))
            session.add(digest)
        return digest


@dataclass(frozen=True)
class Finding:
    account_id: str
    seq: int
    event_id: str | None
    problem: str  # edited | deleted | reordered | digest-mismatch | bad-signature | truncated

    def __str__(self) -> str:
        where = f"record #{self.seq}" + (f" (event {self.event_id})" if self.event_id else "")
        return f"account {self.account_id}: {where}: {self.problem}"


def verify(sessions: sessionmaker[Session], public_key, account_id: str | None = None) -> tuple[int, list[Finding]]:  # type: ignore[no-untyped-def]
    """Walk every chain; returns (records checked, findings). No findings: the trail is intact."""
    checked, findings = 0, []
    with sessions() as session:
        accounts = [account_id] if account_id else list(session.scalars(select(AuditEvent.account_id).distinct()))
        for account in accounts:
            events = list(session.scalars(select(AuditEvent).where(AuditEvent.account_id == account)
                                          .order_by(AuditEvent.seq)))
            digests = list(session.scalars(select(AuditDigest).where(AuditDigest.account_id == account)))
            anchor = _anchor(account, events, digests, public_key)
            checked += len(events)
            findings += _walk(account, events, anchor) + _check_digests(account, events, digests, public_key, anchor)
    return checked, findings


def _anchor(account: str, events: list[AuditEvent], digests: list[AuditDigest], public_key) -> AuditDigest | None:  # type: ignore[no-untyped-def]
    """Where a pruned chain starts: a validly signed digest of the record just before the first one kept."""
    from cryptography.exceptions import InvalidSignature

    if not events or events[0].seq == 1:
        return None
    for digest in digests:
        if digest.seq == events[0].seq - 1 and digest.hash == events[0].prev_hash:
            created = digest.created_at.replace(tzinfo=digest.created_at.tzinfo or UTC)
            try:
                public_key.verify(digest.signature, digest_message(account, digest.seq, digest.hash, created))
            except InvalidSignature:
                return None
            return digest
    return None


def prune(sessions: sessionmaker[Session], signer: DigestSigner, before: datetime) -> int:
    """Retention: drop each account's records older than `before`, first signing a digest of the last one
    dropped, so what remains still verifies from that anchor (and a removal beyond it is still caught)."""
    removed = 0
    with sessions() as session:
        accounts = list(session.scalars(select(AuditEvent.account_id).distinct()))
    for account in accounts:
        with sessions.begin() as session:
            last = session.execute(select(AuditEvent.seq).where(AuditEvent.account_id == account,
                                                                AuditEvent.event_time < before)
                                   .order_by(AuditEvent.seq.desc()).limit(1)).scalar()
        if last is None:
            continue
        anchor = signer.sign(account, upto=last)
        assert anchor is not None
        with sessions.begin() as session:
            removed += session.execute(delete(AuditEvent).where(AuditEvent.account_id == account,
                                                                AuditEvent.seq <= last)).rowcount or 0  # type: ignore[attr-defined]
            session.execute(delete(AuditDigest).where(AuditDigest.account_id == account, AuditDigest.seq < last))
    return removed


def _walk(account: str, events: list[AuditEvent], anchor: AuditDigest | None = None) -> list[Finding]:
    """`anchor`: the verified digest of the last record removed by retention; the chain resumes after it."""
    findings = []
    prev_hash, expected_seq = (anchor.hash, anchor.seq + 1) if anchor is not None else (GENESIS, 1)
    for event in events:
        if event.seq != expected_seq:  # a gap: records between were removed
            findings.append(Finding(account, expected_seq, None, f"deleted (records #{expected_seq}..#{event.seq - 1} "
                                                                  "are missing)"))
        if chain_hash(event.prev_hash, event.record) != event.hash:
            findings.append(Finding(account, event.seq, event.id, "edited (its content no longer matches its hash)"))
        elif event.prev_hash != prev_hash and event.seq == expected_seq:
            findings.append(Finding(account, event.seq, event.id,
                                    "reordered or preceded by a deleted record (its link to the previous one is broken)"))
        prev_hash, expected_seq = event.hash, event.seq + 1
    return findings


def _check_digests(account: str, events: list[AuditEvent], digests: list[AuditDigest], public_key,  # type: ignore[no-untyped-def]
                   anchor: AuditDigest | None = None) -> list[Finding]:
    from cryptography.exceptions import InvalidSignature

    by_seq = {e.seq: e for e in events}
    findings = []
    for digest in digests:
        if anchor is not None and digest.id == anchor.id:
            continue  # its record was removed by retention, on purpose; the anchor was verified above
        created = digest.created_at.replace(tzinfo=digest.created_at.tzinfo or UTC)
        try:
            public_key.verify(digest.signature, digest_message(account, digest.seq, digest.hash, created))
        except InvalidSignature:
            findings.append(Finding(account, digest.seq, None, "bad-signature (a digest was forged or altered)"))
            continue
        event = by_seq.get(digest.seq)
        if event is None:
            findings.append(Finding(account, digest.seq, None, "truncated (a signed record is gone)"))
        elif event.hash != digest.hash:
            findings.append(Finding(account, digest.seq, event.id,
                                    "digest-mismatch (the chain was rewritten after it was signed)"))
    return findings
