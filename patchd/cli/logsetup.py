"""Logging to standard error: ``patchd: warning: ...`` lines, journald priorities, or JSON lines."""

from __future__ import annotations

import logging
import os
import sys

from patchd.timeutil import format_time, utcnow

# sd-daemon(3) priority prefixes: systemd's journal reads them off each line.
_JOURNAL_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"patchd: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _JournalFormatter(logging.Formatter):
    """``<6>message``: the journal keeps the priority and shows the message."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _JOURNAL_PRIORITY.get(record.levelno, 6)
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json  # only for JSON logs: keeps every command's start-up lean

        doc = {
            "time": format_time(utcnow()),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def stderr_is_journal() -> bool:
    """True when standard error is connected to systemd's journal (``$JOURNAL_STREAM``)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def setup_logging(*, debug: bool, json_lines: bool = False) -> None:
    """Send patchd's logs to standard error (INFO, or DEBUG with ``--debug``)."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    elif stderr_is_journal():
        handler.setFormatter(_JournalFormatter())
    else:
        handler.setFormatter(_TextFormatter())
    root = logging.getLogger("patchd")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
