"""Fixtures shared by unit test modules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from outcrop.core.jobs import JobService
from outcrop.storage.db import make_engine, migrate, session_factory
from outcrop.storage.repositories import Accounts
from outcrop.storage.tables import Account

JOBS_ACCOUNT = "123456789012"  # the one account the `jobs` fixture's database holds


@pytest.fixture
def jobs(tmp_path: Path) -> JobService:
    """A job service on a fresh SQLite database with one account, polling fast."""
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        Accounts(session).add(Account(id=JOBS_ACCOUNT, name="a", created_at=datetime.now(UTC)))
    return JobService(sessions, poll_s=0.05)
