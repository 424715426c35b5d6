"""Periodic work in a daemon thread of each server process (SLA sweep, cache warming)."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Periodic:
    """A running periodic task; `stop()` ends it after the current run."""

    thread: threading.Thread
    stopping: threading.Event
    runs: int = 0
    failures: int = 0

    def stop(self, timeout: float | None = 10.0) -> None:
        self.stopping.set()
        self.thread.join(timeout)


def start_periodic(
    name: str,
    work: Callable[[], None],
    interval_s: float,
    *,
    log: logging.Logger,
    failure: str,
    first_delay_s: float | None = None,
) -> Periodic:
    """Run `work` every `interval_s` seconds in a daemon thread named `name`.

    An exception is logged (`failure`, then the traceback) and the next run tries again.
    The first run waits a random part of the interval unless `first_delay_s` is given, so
    several server workers do not all start at the same moment.
    """
    delay = random.uniform(0, interval_s) if first_delay_s is None else first_delay_s
    stopping = threading.Event()

    def loop() -> None:
        wait = delay
        while not stopping.wait(wait):
            wait = interval_s
            try:
                work()
            except Exception:
                task.failures += 1
                log.exception("%s; retrying in %s s", failure, interval_s)
            finally:
                task.runs += 1

    thread = threading.Thread(target=loop, name=name, daemon=True)
    task = Periodic(thread, stopping)
    thread.start()
    return task
