"""The agent's event queue: named timers and events posted from other threads or signals.

The main loop blocks in :meth:`EventQueue.next` until a posted event arrives or the
earliest timer is due — a wait, never a polling loop. ``post`` is safe from signal
handlers and other threads (``queue.SimpleQueue`` is reentrant).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

MAX_PENDING_EVENTS = 1024  # beyond this, repeated posts of the same event are dropped


class EventQueue:
    """Posted events first come first served; timers by due time; each timer name is unique."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._posted: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._timers: dict[str, float] = {}

    def post(self, event: str) -> None:
        """Deliver ``event`` as soon as the loop is free (from any thread or signal handler)."""
        if self._posted.qsize() < MAX_PENDING_EVENTS:
            self._posted.put(event)

    def after(self, name: str, seconds: float) -> None:
        """Fire timer ``name`` in ``seconds`` (replacing an earlier setting of it)."""
        self._timers[name] = self._clock() + max(0.0, seconds)

    def cancel(self, name: str) -> None:
        self._timers.pop(name, None)

    def due_in(self, name: str) -> float | None:
        """Seconds until timer ``name`` fires, or ``None`` if it is not set."""
        due = self._timers.get(name)
        return None if due is None else max(0.0, due - self._clock())

    def next(self) -> str:
        """Block until an event is posted or a timer is due; return its name."""
        while True:
            try:
                return self._posted.get_nowait()
            except queue.Empty:
                pass
            if self._timers:
                name, due = min(self._timers.items(), key=lambda item: item[1])
                wait = due - self._clock()
                if wait <= 0:
                    del self._timers[name]
                    return name
            else:
                wait = None
            try:
                return self._posted.get(timeout=wait)
            except queue.Empty:
                continue  # the timer is due now
