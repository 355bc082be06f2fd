"""Multi-threaded torch work leaves no OpenMP team behind when run through engines.openmp.

A team left on a long-lived thread makes libgomp stop spinning at barriers for every OpenMP user in the
process, llama.cpp included (its decode speed halved: see outcrop/engines/openmp.py). The team's threads are
visible as OS threads, so the check is their count, not a timing.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from outcrop.engines.openmp import on_own_thread

torch = pytest.importorskip("torch")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _steady() -> int:
    """The thread count once it stays put for a quarter second (exiting threads take a moment to go)."""
    deadline = time.monotonic() + 10
    seen, same = _threads(), 0
    while same < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
        now = _threads()
        seen, same = now, (same + 1 if now == seen else 0)
    return seen


def _parallel_work() -> float:
    torch.set_num_threads(2)  # a team of two: the calling thread and one OpenMP worker
    return float(torch.ones(4_000_000).exp_().sum())


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_team_ends_with_its_thread() -> None:
    old = torch.get_num_threads()
    done, leave = threading.Event(), threading.Event()

    def lingering() -> None:
        _parallel_work()
        done.set()
        leave.wait(30)

    try:
        on_own_thread(_parallel_work)  # torch's first parallel op also starts threads of its own, for good
        before = _steady()
        # The contrast first: on a thread that lives on, the team stays (the thread + at least one worker).
        holder = threading.Thread(target=lingering, daemon=True)
        holder.start()
        done.wait(30)
        assert _steady() >= before + 2
        leave.set()
        holder.join()
        assert _steady() == before

        assert on_own_thread(_parallel_work) == pytest.approx(4_000_000 * 2.718281828, rel=1e-4)
        assert _steady() == before
    finally:
        leave.set()
        torch.set_num_threads(old)


def test_result_and_exception_cross_over() -> None:
    assert on_own_thread(lambda: threading.current_thread().name) == "outcrop-torch"
    with pytest.raises(KeyError, match="nope"):
        on_own_thread(lambda: {}["nope"])
