"""Cache freshness across processes: a counter in the database, bumped by every change to a domain.

The server keeps keys, policies and key states in memory; a change made by the same process clears
them at once, a change made by another process (the CLI while the server runs) within `every` seconds.
"""

from __future__ import annotations

import time

from sqlalchemy.orm import Session, sessionmaker

from outcrop.storage.repositories import bump, generation


class Generation:
    def __init__(self, sessions: sessionmaker[Session], name: str, every: float = 1.0) -> None:
        self.sessions = sessions
        self.name = name
        self.every = every
        self._seen = self._read()
        self._checked = time.monotonic()

    def _read(self) -> int:
        with self.sessions() as session:
            return generation(session, self.name)

    def changed(self) -> bool:
        """True once after the counter moved; looks at the database at most every `every` seconds."""
        now = time.monotonic()
        if now - self._checked < self.every:
            return False
        self._checked = now
        value = self._read()
        if value == self._seen:
            return False
        self._seen = value
        return True

    def bump(self, session: Session) -> None:
        bump(session, self.name)
