"""Long work as jobs in the database (DESIGN.md §5): queued → running → completed | failed | stopping → stopped.

`outcrop serve` runs one worker thread in-process per lane: each job kind is registered in a lane, so that
hours of fine-tuning (the "training" lane) do not hold up an ingestion or a batch job (the "main" lane). A
job is claimed with a compare-and-set on its status, so more workers (threads or processes) never run the
same job twice. A running job's worker beats every
HEARTBEAT_S; a job not heard of for LEASE_S (its server crashed, its CLI was killed) is queued again, and its
handler resumes (ingestion is idempotent by content digest), at most MAX_ATTEMPTS times, then failed with a
clear message; a stopping job whose worker is gone is stopped. Nothing stays "running" forever.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from outcrop.errors import Conflict, NotFound, OutcropError
from outcrop.storage.repositories import AccountScope
from outcrop.storage.tables import Job

log = logging.getLogger("outcrop.jobs")

MAX_ATTEMPTS = 3
MAIN_LANE = "main"
TRAINING_LANE = "training"  # fine-tuning and model import: long, CPU- and memory-heavy
HEARTBEAT_S = 10.0  # a running job's updated_at advances at least this often while its worker lives
LEASE_S = 30.0  # a running job not heard of for this long lost its worker (a killed CLI, a crashed node)
ACTIVE = ("queued", "running", "stopping")
FINAL = ("completed", "failed", "stopped")


class Stopped(Exception):
    """Raised inside a handler when its job was asked to stop."""


@dataclass
class JobRun:
    """What a handler sees of its job: the target, progress to report, and whether to stop."""

    id: str
    account_id: str
    kind: str
    target: str
    progress: dict[str, Any]
    sessions: sessionmaker[Session]
    _checked: float = field(default=0.0)
    _saved: float = field(default=0.0)
    _stop: bool = field(default=False)

    def report(self, force: bool = False, **progress: Any) -> None:
        """Update the progress; written at most twice a second unless forced."""
        self.progress.update(progress)
        now = time.monotonic()
        if force or now - self._saved >= 0.5:
            self._saved = now
            with self.sessions.begin() as session:
                session.execute(update(Job).where(Job.id == self.id).values(
                    progress=json.dumps(self.progress), updated_at=datetime.now(UTC)))

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._checked >= 0.25:
            self._checked = now
            with self.sessions() as session:
                self._stop = session.scalar(select(Job.status).where(Job.id == self.id)) == "stopping"
        return self._stop

    def check(self) -> None:
        if self.should_stop():
            raise Stopped()


Handler = Callable[[JobRun], None]


class JobService:
    def __init__(self, sessions: sessionmaker[Session], poll_s: float = 1.0, lease_s: float = LEASE_S) -> None:
        self.sessions = sessions
        self.lease_s = lease_s
        self.handlers: dict[str, Handler] = {}
        self.poll_s = poll_s
        self.lanes: dict[str, set[str]] = {}  # lane -> the job kinds its worker runs
        self._wakes: dict[str, threading.Event] = {}
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    def register(self, kind: str, handler: Handler, lane: str = MAIN_LANE) -> None:
        """`handler` runs jobs of `kind`, on `lane`'s worker thread (call before start)."""
        self.handlers[kind] = handler
        for kinds in self.lanes.values():
            kinds.discard(kind)
        self.lanes.setdefault(lane, set()).add(kind)
        self._wakes.setdefault(lane, threading.Event())

    # -- the API side ---------------------------------------------------------------------------------

    def submit(self, account_id: str, kind: str, target: str, description: str | None = None,
               job_id: str | None = None, also: tuple[Any, ...] = ()) -> Job:
        """Queue a job; `also` rows (its resource records) are written in the same transaction."""
        now = datetime.now(UTC)
        job = Job(id=job_id or str(uuid.uuid4()), kind=kind, target=target, status="queued",
                  description=description, progress="{}", created_at=now, updated_at=now, attempts=0)
        with self.sessions.begin() as session:
            scope = AccountScope(session, account_id)
            scope.add(job)
            for row in also:
                scope.add(row)
            session.expunge(job)
        for wake in self._wakes.values():
            wake.set()
        return job

    def get(self, account_id: str, job_id: str, kind: str) -> Job:
        with self.sessions() as session:
            job = AccountScope(session, account_id).get(Job, job_id)
            if job is None or job.kind != kind:
                raise NotFound(f"Job {job_id} was not found")
            session.expunge(job)
        return job

    def list(self, account_id: str, kind: str, target: str) -> list[Job]:
        with self.sessions() as session:
            rows = list(AccountScope(session, account_id).rows(Job, Job.kind == kind, Job.target == target))
            for row in rows:
                session.expunge(row)
        return rows

    def active(self, account_id: str, kind: str, target: str) -> Job | None:
        with self.sessions() as session:
            return AccountScope(session, account_id).first(Job, Job.kind == kind, Job.target == target,
                                                           Job.status.in_(ACTIVE))

    def stop(self, account_id: str, job_id: str, kind: str) -> Job:
        """Ask a job to stop: a queued one stops at once, a running one at its next check."""
        job = self.get(account_id, job_id, kind)
        if job.status in FINAL:
            raise Conflict(f"Job {job_id} has already ended ({job.status}); it cannot be stopped")
        with self.sessions.begin() as session:
            for status, new in (("queued", "stopped"), ("running", "stopping")):
                session.execute(update(Job).where(Job.id == job_id, Job.status == status).values(
                    status=new, updated_at=datetime.now(UTC)))
        return self.get(account_id, job_id, kind)

    # -- the worker side ------------------------------------------------------------------------------

    def recover(self, stale_before: datetime | None = None) -> None:
        """Resume what was running (a few times at most) and finish what was stopping: at start-up every such
        job (`stale_before` None), later only those whose worker stopped beating (a lost lease)."""
        now = datetime.now(UTC)
        lost = [Job.updated_at < stale_before] if stale_before is not None else []
        with self.sessions.begin() as session:
            session.execute(update(Job).where(Job.status == "stopping", *lost).values(status="stopped", updated_at=now))
            session.execute(update(Job).where(Job.status == "running", Job.attempts >= MAX_ATTEMPTS, *lost).values(
                status="failed", updated_at=now,
                failure=f"The job was interrupted {MAX_ATTEMPTS} times (its worker stopped) and was not retried again"))
            session.execute(update(Job).where(Job.status == "running", *lost).values(status="queued", updated_at=now))

    def start(self) -> None:
        self.recover(stale_before=datetime.now(UTC) - timedelta(seconds=self.lease_s))
        for lane in self.lanes or {MAIN_LANE: set()}:
            thread = threading.Thread(target=self._loop, args=(lane,), name=f"outcrop-jobs-{lane}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self, timeout: float = 10.0) -> None:
        self._closing.set()
        for wake in self._wakes.values():
            wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def run_pending(self, lane: str | None = None) -> int:
        """Run queued jobs (of `lane`'s kinds, or of every kind) until none is left: a worker loop's body;
        tests and the CLI call it directly."""
        kinds = self.lanes.get(lane, set()) if lane is not None else set(self.handlers)
        ran = 0
        while not self._closing.is_set():
            run = self._claim(kinds)
            if run is None:
                return ran
            self._run(run)
            ran += 1
        return ran

    def run_job(self, job_id: str) -> bool:
        """Run one queued job in this process now (the CLI's `kb sync`); False when another worker has it."""
        run = self._claim(set(self.handlers), job_id)
        if run is None:
            return False
        self._run(run)
        return True

    def _loop(self, lane: str) -> None:
        wake = self._wakes.setdefault(lane, threading.Event())
        while not self._closing.is_set():
            try:
                if lane == MAIN_LANE:  # one lane looks for lost leases, for all
                    self.recover(stale_before=datetime.now(UTC) - timedelta(seconds=self.lease_s))
                self.run_pending(lane)
            except Exception:
                log.exception("the %s job worker failed; retrying", lane)
            wake.wait(self.poll_s)
            wake.clear()

    def _claim(self, kinds: set[str], job_id: str | None = None) -> JobRun | None:
        if not kinds:
            return None
        with self.sessions.begin() as session:
            which = [Job.id == job_id] if job_id else []
            queued = session.scalars(select(Job).where(Job.status == "queued", Job.kind.in_(sorted(kinds)),
                                                       *which).order_by(Job.created_at).limit(5)).all()
            for job in queued:
                claimed = session.execute(update(Job).where(Job.id == job.id, Job.status == "queued").values(
                    status="running", attempts=Job.attempts + 1, updated_at=datetime.now(UTC)))
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    return JobRun(job.id, job.account_id, job.kind, job.target, json.loads(job.progress or "{}"),
                                  self.sessions)
        return None

    def _run(self, run: JobRun) -> None:
        status, failure = "completed", None
        done = threading.Event()
        beating = threading.Thread(target=self._heartbeat, args=(run.id, done), daemon=True)
        beating.start()
        try:
            self.handlers[run.kind](run)
            if run.should_stop():
                status = "stopped"
        except Stopped:
            status = "stopped"
        except OutcropError as exc:
            status, failure = "failed", exc.message
        except Exception as exc:
            log.exception("job %s (%s) failed", run.id, run.kind)
            status, failure = "failed", f"internal error: {type(exc).__name__}: {exc}"
        finally:
            done.set()
        with self.sessions.begin() as session:
            session.execute(update(Job).where(Job.id == run.id).values(
                status=status, failure=failure, progress=json.dumps(run.progress), updated_at=datetime.now(UTC)))

    def _heartbeat(self, job_id: str, done: threading.Event) -> None:
        while not done.wait(min(HEARTBEAT_S, self.lease_s / 3)):
            with self.sessions.begin() as session:
                session.execute(update(Job).where(Job.id == job_id, Job.status.in_(("running", "stopping")))
                                .values(updated_at=datetime.now(UTC)))
