"""Why an HTTP request got no answer, said without the URL (requests quotes it whole).

Shared by everything patchd fetches or sends over HTTP: policy fetches, signed reports
and HTTP health checks. ``str(error)`` is never shown: requests and urllib3 put the full
URL, query string (and so a token) included, into their messages.
"""

from __future__ import annotations

import ssl

MAX_ERROR_CHAIN = 16  # exceptions examined when looking for a network error's cause


def error_causes(error: BaseException) -> list[BaseException]:
    """``error`` and what caused it (``__cause__``, ``__context__``, urllib3's ``reason``,
    wrapped exceptions in ``args``), breadth first, at most :data:`MAX_ERROR_CHAIN`."""
    found: list[BaseException] = []
    queue: list[BaseException] = [error]
    while queue and len(found) < MAX_ERROR_CHAIN:
        current = queue.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += [a for a in current.args if isinstance(a, BaseException)]
        queue += [e for e in linked if isinstance(e, BaseException)]
    return found


def network_reason(error: BaseException, timeout_s: float) -> str | None:
    """TLS, connection or timeout trouble found among the causes; ``None`` if none is."""
    import requests
    import urllib3

    causes = error_causes(error)
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({cause.verify_message})"
    for cause in causes:
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed ({cause.reason or 'handshake'})"
    for cause in causes:  # the system's word first: urllib3 files "refused" under timeouts
        if isinstance(cause, OSError) and cause.errno is not None and cause.strerror:
            return f"cannot connect: {cause.strerror}"
    timeouts = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)
    if any(isinstance(cause, timeouts) for cause in causes):
        return f"no answer within {timeout_s:g} s"
    return None
