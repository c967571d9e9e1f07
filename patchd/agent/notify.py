"""The systemd notification protocol (sd_notify(3)), without a dependency.

A datagram of ``KEY=value`` lines to the socket named by ``$NOTIFY_SOCKET`` (a path, or an
abstract socket when it starts with ``@``). Outside systemd the variable is unset and
every call does nothing. The watchdog (``$WATCHDOG_USEC``) is kept alive from a thread of
its own, but only while the main loop shows signs of life, so a hung agent is restarted.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

MAX_STATUS_CHARS = 200


class Notifier:
    """Sends READY, STATUS, RELOADING, STOPPING and WATCHDOG notifications to systemd."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._lock = threading.Lock()
        watchdog_usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        self.watchdog_interval_s: float | None = None
        if (
            watchdog_usec.isdigit()
            and int(watchdog_usec) > 0
            and watchdog_pid in ("", str(os.getpid()))
        ):
            self.watchdog_interval_s = int(watchdog_usec) / 1_000_000

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, **fields: str) -> None:
        """Send one notification (``send(READY="1", STATUS="...")``); errors are logged, not raised."""
        if not self._address:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        with self._lock:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                    # Never wait: a listener that stopped reading must not hang the agent.
                    sock.sendto(message, socket.MSG_DONTWAIT, self._address)
            except OSError as e:
                log.warning("cannot notify systemd at %s: %s", self._address.lstrip("\0"), e)

    def ready(self, status: str) -> None:
        """Started, or done reloading (after :meth:`reloading`): systemd waits for this."""
        self.send(READY="1", STATUS=status[:MAX_STATUS_CHARS], MAINPID=str(os.getpid()))

    def status(self, status: str) -> None:
        self.send(STATUS=status[:MAX_STATUS_CHARS])

    def reloading(self) -> None:
        monotonic_usec = str(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)
        self.send(RELOADING="1", MONOTONIC_USEC=monotonic_usec)

    def stopping(self) -> None:
        self.send(STOPPING="1")


class Watchdog:
    """Pings systemd's watchdog while the agent's main loop is alive.

    The loop calls :meth:`beat` whenever it wakes; before a long step it calls
    :meth:`busy` with that step's own time limit, so a package manager working for an hour
    does not look like a hang, but one stuck past its limit does.
    """

    def __init__(self, notifier: Notifier, clock: Callable[[], float] = time.monotonic) -> None:
        self._notifier = notifier
        self._clock = clock
        self._interval = notifier.watchdog_interval_s
        self._alive_until = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        if self._interval is not None:
            self._alive_until = max(self._alive_until, self._clock() + self._interval)

    def busy(self, seconds: float) -> None:
        if self._interval is not None:
            self._alive_until = max(self._alive_until, self._clock() + seconds)

    def start(self) -> None:
        if self._interval is None or self._thread is not None:
            return
        self.beat()
        self._thread = threading.Thread(target=self._run, name="patchd-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def tick(self) -> bool:
        """Ping systemd if the main loop is alive; say whether it did."""
        if self._clock() <= self._alive_until:
            self._notifier.send(WATCHDOG="1")
            return True
        log.error("the main loop has not shown life in time: letting systemd's watchdog act")
        return False

    def _run(self) -> None:
        assert self._interval is not None
        while not self._stop.wait(self._interval / 2):  # a timer at systemd's cadence, not a poll
            self.tick()
