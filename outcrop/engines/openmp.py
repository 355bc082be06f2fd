"""Multi-threaded torch work on a thread of its own, so its OpenMP team ends with it.

llama.cpp (ggml) and torch share the process's libgomp. ggml meets its threads at an OpenMP barrier after
every node of the model's graph, and libgomp spins at a barrier only while it manages no more threads than
there are CPUs; past that it sleeps on a futex at once. A thread that once ran a multi-threaded torch op
keeps its OpenMP team (idle, but counted) until the thread ends. So one fine-tuning run or one embedding
batch on a long-lived thread (a job worker, a request pool thread) halved llama.cpp's decode speed for the
rest of the process: SmolLM2-135M on 2 cores went from 94 to 41 tokens/s, and stayed there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def on_own_thread(work: Callable[[], T], name: str = "outcrop-torch") -> T:
    """Run `work` on a new thread and return its result (or raise its exception) here.

    The thread, and the OpenMP team torch made on it, ends when `work` does. Starting both costs under a
    millisecond (0.9 ms measured on a busy 2-core machine): use it for work that spreads over several cores,
    not for single-threaded calls (which never make a team).
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome[0]
