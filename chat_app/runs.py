"""The replies being generated, per browser session, so that stop can end them.

runs = Runs()
run = runs.start(session)        # run.cancel is the engine's cancel event
runs.stop(session)               # from another thread: waits until the reply is stored
runs.end(run)                    # the reply's own code, once its end is stored
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field


@dataclass(eq=False)
class Run:
    """One reply being generated; `stop` sets `cancel`, the engine's cancel event."""

    key: str
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    shown: str = ""  # the reply's text as last sent to the browser


class Runs:
    def __init__(self) -> None:
        self._runs: dict[str, set[Run]] = collections.defaultdict(set)
        self._lock = threading.Lock()

    def start(self, run_key: str) -> Run:
        run = Run(run_key)
        with self._lock:
            self._runs[run_key].add(run)
        return run

    def end(self, run: Run) -> None:
        with self._lock:
            runs = self._runs.get(run.key)
            if runs is not None:
                runs.discard(run)
                if not runs:
                    del self._runs[run.key]
        run.done.set()

    def stop(self, run_key: str, wait_s: float = 5.0) -> bool:
        """Cancel this session's replies and wait (at most `wait_s`) until they ended; True if one ran."""
        with self._lock:
            runs = list(self._runs.get(run_key, ()))
        for run in runs:
            run.cancel.set()
        deadline = time.monotonic() + wait_s
        for run in runs:
            run.done.wait(max(0.0, deadline - time.monotonic()))
        return bool(runs)

    def running(self, run_key: str) -> bool:
        with self._lock:
            return bool(self._runs.get(run_key))
