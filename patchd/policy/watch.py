"""Watching the policy file: one debounced call after the file or its signatures change.

The watch is on the file's directory, not the file: editors and ``patchd policy sign``
replace files (a new inode), and an admin writes ``policy.yaml.sig`` after ``policy.yaml``.
Only events naming ``policy.yaml`` or ``policy.yaml.sig`` count (created, modified, closed
after writing, moved to or from, deleted), plus an overflow of the kernel's queue (events
were lost, so assume a change). A burst of events gives one call, ``debounce_s`` after the
last of them, so the file is judged once it is whole and its signatures are written.

Calls are serialised: a change during a call gives exactly one more call after it, never a
second call at the same time. The call runs in the watcher's own thread, so it should only
tell the agent's loop to reload (the state database belongs to the thread that opened it).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from patchd.errors import ConfigError, PatchdError
from patchd.signing.dsse import detached_signature_path

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

log = logging.getLogger(__name__)

DEFAULT_DEBOUNCE_S = 2.0
MAX_DEBOUNCE_S = 300.0
STOP_WAIT_S = 30.0  # how long stop() waits for a running call to return
# watchdog's event types (its strings, which watchdog 6 and 7 share) that may mean a change.
_CHANGE_EVENTS = frozenset({"created", "modified", "closed", "moved", "deleted"})
_EVENTS_LOST = "events_lost"  # the kernel's queue overflowed (watchdog 7)


class PolicyFileWatcher:
    """Calls ``on_change()`` once after a burst of changes to ``path`` or ``path.sig``.

    :meth:`start` begins watching ``path``'s directory, which must exist; :meth:`stop`
    ends it and every thread it started. Exceptions from ``on_change`` are logged and
    never reach watchdog's threads; the watcher keeps working.
    """

    def __init__(
        self,
        path: Path,
        on_change: Callable[[], None],
        *,
        debounce_s: float = DEFAULT_DEBOUNCE_S,
    ) -> None:
        if not 0 < debounce_s <= MAX_DEBOUNCE_S:
            raise ValueError(f"debounce_s must be in (0, {MAX_DEBOUNCE_S:g}], not {debounce_s}")
        self.path = Path(os.path.abspath(path))  # not resolved: the directory as the admin names it
        self.sig_path = detached_signature_path(self.path)
        self.directory = self.path.parent
        self.on_change = on_change
        self.debounce_s = debounce_s
        self._targets = frozenset({self.path, self.sig_path})
        self._lock = threading.Lock()  # guards every field below
        self._observer: BaseObserver | None = None
        self._timer: threading.Timer | None = None  # the pending debounce, if any
        self._caller: threading.Thread | None = None  # the thread running on_change, if any
        self._again = False  # a debounce ended while on_change ran: call once more

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Begin watching.

        Raises :class:`ConfigError` if ``path``'s directory does not exist (the agent's
        configuration check makes sure it does; a directory created later is not picked
        up), :class:`PatchdError` if the system refuses the watch (inotify limits, for
        instance), :class:`RuntimeError` if already started.
        """
        from watchdog.observers import Observer

        if not self.directory.is_dir():
            raise ConfigError(
                f"cannot watch the policy file {self.path}: {self.directory} is not a directory",
                hint="create the directory, or fix policy.file in the agent configuration",
            )
        with self._lock:
            if self._observer is not None:
                raise RuntimeError("the policy file watcher is already running")
            observer = Observer()
            try:
                observer.schedule(_Handler(self), str(self.directory), recursive=False)
                observer.start()
            except OSError as e:
                observer.stop()  # releases what schedule() allocated; nothing was started
                raise PatchdError(
                    f"cannot watch {self.directory}: {e.strerror or e}",
                    hint="check the directory's permissions and the inotify limits "
                    "(fs.inotify.max_user_watches, fs.inotify.max_user_instances)",
                ) from None
            self._observer = observer
        log.debug("watching %s and %s", self.path, self.sig_path)

    def stop(self) -> None:
        """Stop watching: no call starts after this returns; a pending one is dropped.

        Waits up to ``STOP_WAIT_S`` for a running call to return (not when called from
        ``on_change`` itself). Stopping a watcher that is not running does nothing.
        """
        with self._lock:
            observer, self._observer = self._observer, None
            timer, self._timer = self._timer, None
            caller = self._caller
            self._again = False
        if timer is not None:
            timer.cancel()
        if observer is not None:
            observer.stop()
            observer.join()
        for thread in (timer, caller):
            if thread is not None and thread is not threading.current_thread():
                thread.join(STOP_WAIT_S)
                if thread.is_alive():
                    log.warning(
                        "the policy reload callback still runs after %g s; leaving it",
                        STOP_WAIT_S,
                    )

    def __enter__(self) -> PolicyFileWatcher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- events (watchdog's thread) --------------------------------------------------

    def _relevant(self, event: FileSystemEvent) -> bool:
        if event.event_type == _EVENTS_LOST:
            log.warning("file events were lost in %s; re-reading the policy", self.directory)
            return True
        if event.event_type not in _CHANGE_EVENTS:
            return False
        if event.is_directory:
            if (
                event.event_type == "deleted"
                and Path(os.fsdecode(event.src_path)) == self.directory
            ):
                log.error(
                    "%s was removed: file events for %s are no longer seen (the agent still "
                    "rechecks the file every policy.file_recheck seconds)",
                    self.directory,
                    self.path.name,
                )
            return False
        paths = (event.src_path, event.dest_path)
        return any(p and Path(os.fsdecode(p)) in self._targets for p in paths)

    def _event(self, event: FileSystemEvent) -> None:
        """Restart the debounce: a call ``debounce_s`` after the last relevant event."""
        if not self._relevant(event):
            return
        with self._lock:
            if self._observer is None:  # stopped
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce_s, self._debounced)
            self._timer.name = "patchd-policy-watch"
            self._timer.daemon = True  # a hung callback must not keep the process alive
            self._timer.start()

    # -- calls (a timer's thread) ----------------------------------------------------

    def _debounced(self) -> None:
        with self._lock:
            if self._observer is None or self._timer is not threading.current_thread():
                return  # stopped, or superseded by a later event
            self._timer = None
            if self._caller is not None:  # never two calls at once: the running one repeats
                log.debug("a change arrived during the reload: reloading once more after it")
                self._again = True
                return
            self._caller = threading.current_thread()
        while True:
            self._call()
            with self._lock:
                if not (self._again and self._observer is not None):
                    self._caller = None
                    self._again = False
                    return
                self._again = False

    def _call(self) -> None:
        log.info("%s changed: reloading the policy", self.path)
        try:
            self.on_change()
        except Exception:  # the agent must survive its callback; watchdog must never see it
            log.exception("reloading the policy after %s changed failed", self.path)


class _Handler(FileSystemEventHandler):
    """Hands every event of the watched directory to its :class:`PolicyFileWatcher`."""

    def __init__(self, watcher: PolicyFileWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self.watcher._event(event)
        except Exception:  # an exception here would end watchdog's dispatch thread
            log.exception("handling a file event for %s failed", self.watcher.path)
