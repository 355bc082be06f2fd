"""The job table's life cycle: claim, progress, stop, failure, and recovery when a worker dies."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from outcrop.core.jobs import MAX_ATTEMPTS, TRAINING_LANE, JobRun, JobService
from outcrop.errors import Conflict, Invalid, NotFound
from outcrop.storage.tables import Job
from tests.unit.conftest import JOBS_ACCOUNT as ACCOUNT


def test_a_job_runs_once_and_reports_progress(jobs: JobService) -> None:
    seen: list[str] = []

    def handler(run: JobRun) -> None:
        seen.append(run.target)
        run.report(force=True, done=3)

    jobs.register("demo", handler)
    job = jobs.submit(ACCOUNT, "demo", "t1", "first")
    assert jobs.run_pending() == 1 and jobs.run_pending() == 0
    done = jobs.get(ACCOUNT, job.id, "demo")
    assert (done.status, done.progress, seen) == ("completed", '{"done": 3}', ["t1"])
    assert done.attempts == 1
    with pytest.raises(NotFound):
        jobs.get("999999999999", job.id, "demo")  # another account's job does not exist for it
    with pytest.raises(Conflict):
        jobs.stop(ACCOUNT, job.id, "demo")


def test_failures_keep_their_message(jobs: JobService) -> None:
    def handler(run: JobRun) -> None:
        raise Invalid("the bucket is empty")

    jobs.register("demo", handler)
    job = jobs.submit(ACCOUNT, "demo", "t")
    jobs.run_pending()
    failed = jobs.get(ACCOUNT, job.id, "demo")
    assert (failed.status, failed.failure) == ("failed", "the bucket is empty")


def test_stop_a_queued_and_a_running_job(jobs: JobService) -> None:
    started, release = threading.Event(), threading.Event()

    def handler(run: JobRun) -> None:
        started.set()
        release.wait(5)
        run._checked = 0  # look now, not at the next 0.25 s tick
        run.check()

    jobs.register("demo", handler)
    queued = jobs.submit(ACCOUNT, "demo", "q")
    assert jobs.stop(ACCOUNT, queued.id, "demo").status == "stopped"
    running = jobs.submit(ACCOUNT, "demo", "r")
    worker = threading.Thread(target=jobs.run_pending)
    worker.start()
    assert started.wait(5)
    assert jobs.stop(ACCOUNT, running.id, "demo").status == "stopping"
    release.set()
    worker.join(5)
    assert jobs.get(ACCOUNT, running.id, "demo").status == "stopped"


def test_a_job_whose_worker_died_is_resumed_then_given_up(jobs: JobService) -> None:
    jobs.register("demo", lambda run: None)
    job = jobs.submit(ACCOUNT, "demo", "t")
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    with jobs.sessions.begin() as session:  # as if a worker claimed it and then was killed
        session.execute(update(Job).where(Job.id == job.id).values(status="running", attempts=1, updated_at=long_ago))
    jobs.recover(stale_before=datetime.now(UTC) - timedelta(minutes=1))
    assert jobs.get(ACCOUNT, job.id, "demo").status == "queued"
    with jobs.sessions.begin() as session:  # a live worker's job (recent heartbeat) is left alone
        session.execute(update(Job).where(Job.id == job.id).values(status="running", updated_at=datetime.now(UTC)))
    jobs.recover(stale_before=datetime.now(UTC) - timedelta(minutes=1))
    assert jobs.get(ACCOUNT, job.id, "demo").status == "running"
    with jobs.sessions.begin() as session:
        session.execute(update(Job).where(Job.id == job.id).values(attempts=MAX_ATTEMPTS, updated_at=long_ago))
    jobs.recover(stale_before=datetime.now(UTC) - timedelta(minutes=1))
    gave_up = jobs.get(ACCOUNT, job.id, "demo")
    assert gave_up.status == "failed" and "interrupted" in (gave_up.failure or "")


def test_the_worker_thread_picks_up_submitted_jobs(jobs: JobService) -> None:
    ran = threading.Event()
    jobs.register("demo", lambda run: ran.set())
    jobs.start()
    try:
        jobs.submit(ACCOUNT, "demo", "t")
        assert ran.wait(5)
    finally:
        jobs.close()


def test_a_long_job_in_its_lane_does_not_hold_up_the_main_lane(jobs: JobService) -> None:
    training, release = threading.Event(), threading.Event()

    def train(run: JobRun) -> None:
        training.set()
        release.wait(10)

    jobs.register("train", train, TRAINING_LANE)
    jobs.register("ingest", lambda run: None)
    jobs.start()
    try:
        long = jobs.submit(ACCOUNT, "train", "model")
        assert training.wait(5)
        quick = jobs.submit(ACCOUNT, "ingest", "kb")
        deadline = time.monotonic() + 5
        while jobs.get(ACCOUNT, quick.id, "ingest").status != "completed" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert jobs.get(ACCOUNT, quick.id, "ingest").status == "completed"
        assert jobs.get(ACCOUNT, long.id, "train").status == "running"
        release.set()
        while jobs.get(ACCOUNT, long.id, "train").status != "completed" and time.monotonic() < deadline + 5:
            time.sleep(0.02)
        assert jobs.get(ACCOUNT, long.id, "train").status == "completed"
        assert jobs.run_pending(TRAINING_LANE) == 0 and jobs.lanes == {TRAINING_LANE: {"train"}, "main": {"ingest"}}
    finally:
        release.set()
        jobs.close()
