"""Fetching a signed policy from a collector URL: bounded in size and time, trusted for nothing.

Neither the collector, the network nor TLS makes a policy trusted: the signatures do, and
:class:`~patchd.policy.gate.PolicyGate` checks them over the exact payload bytes. This
module only brings those bytes home without letting a server hurt the agent: TLS verified,
connect and read timeouts plus an overall deadline, a byte cap enforced while streaming
(a server cannot make the agent read or hold more than the cap, whatever it declares), no
compressed bodies (no decompression bombs), a few redirects (each to a URL the configuration
would accept, never from https to http), and no server-chosen text in messages. URLs are
shown as ``scheme://host/path`` only: the query string may carry a token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from http import HTTPStatus
from urllib.parse import urljoin

import requests
import urllib3

from patchd import __version__
from patchd.config import policy_url_problem, redact_url
from patchd.errors import ConfigError, TemporaryFailure, TrustError
from patchd.neterrors import network_reason
from patchd.policy.loader import MAX_POLICY_BYTES
from patchd.signing.dsse import POLICY_PAYLOAD_TYPE, Envelope

log = logging.getLogger(__name__)

# The envelope carries the policy base64-encoded plus signatures. Envelope.from_json
# refuses more than MAX_ENVELOPE_BYTES (1 MiB) whatever is read here.
MAX_RESPONSE_BYTES = MAX_POLICY_BYTES + 64 * 1024
DEFAULT_TIMEOUT_S = 30.0  # connect, each read, and the whole fetch
CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 3
HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "identity",
    "User-Agent": f"patchd/{__version__}",
}


def fetch_policy(
    url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, max_bytes: int = MAX_RESPONSE_BYTES
) -> Envelope:
    """The policy envelope served at ``url``, parsed strictly; its signatures are NOT judged.

    ``timeout_s`` bounds connecting, each read, and the whole transfer (checked between
    reads, so a fetch ends within about twice ``timeout_s``). Raises
    :class:`TemporaryFailure` (exit status 75) for a network, TLS or HTTP problem, a body
    over ``max_bytes`` (reading stops at the cap), a compressed body or too many
    redirects; :class:`TrustError` if the body is not a DSSE envelope of a policy;
    :class:`ConfigError` if ``url`` is not an acceptable policy URL. Messages name the URL
    without its query string and never quote the body.
    """
    problem = policy_url_problem(url)
    if problem is not None:
        raise ConfigError(f"policy URL {redact_url(url)}: {problem}")
    shown = redact_url(url)
    log.debug("fetching the policy from %s", shown)
    deadline_s = time.monotonic() + timeout_s
    try:
        with requests.Session() as session:
            body = _download(
                session,
                url,
                shown=shown,
                timeout_s=timeout_s,
                deadline_s=deadline_s,
                max_bytes=max_bytes,
            )
    except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
        raise _network_failure(shown, e, timeout_s) from None
    envelope = Envelope.from_json(body, shown)
    if envelope.payload_type != POLICY_PAYLOAD_TYPE:
        raise TrustError(
            f"{shown}: served a {envelope.payload_type!r} envelope, not a policy",
            hint="point policy.urls at the collector's policy endpoint",
        )
    return envelope


def _download(
    session: requests.Session,
    url: str,
    *,
    shown: str,
    timeout_s: float,
    deadline_s: float,
    max_bytes: int,
) -> bytes:
    """The body of the final response after at most ``MAX_REDIRECTS`` redirects."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        with session.get(
            current,
            headers=HEADERS,
            timeout=(timeout_s, timeout_s),
            stream=True,
            allow_redirects=False,  # followed below, each target checked like a configured URL
            verify=True,
        ) as response:
            if response.is_redirect:
                try:
                    current = urljoin(current, response.headers["Location"])
                except ValueError:  # an IPv6 host without its closing bracket
                    raise _failure(shown, "redirected to an invalid URL") from None
                problem = _redirect_problem(url, current)
                if problem is not None:
                    raise _failure(shown, f"redirected to a URL that {problem}")
                continue
            if response.status_code != HTTPStatus.OK:
                raise _failure(shown, f"HTTP {_status(response.status_code)}")
            return _read_capped(response, shown, deadline_s, timeout_s, max_bytes)
    raise _failure(shown, f"more than {MAX_REDIRECTS} redirects")


def _redirect_problem(origin: str, target: str) -> str | None:
    problem = policy_url_problem(target)
    if problem is None and _scheme(origin) == "https" and _scheme(target) != "https":
        return "leaves https"
    return problem


def _scheme(url: str) -> str:
    return url.partition(":")[0].lower()


def _read_capped(
    response: requests.Response, shown: str, deadline_s: float, timeout_s: float, max_bytes: int
) -> bytes:
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise _failure(shown, "the response is compressed (only identity encoding is accepted)")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _failure(shown, f"the response declares more than {max_bytes} bytes")
    body = bytearray()
    for chunk in _chunks(response):
        body += chunk
        if len(body) > max_bytes:
            raise _failure(shown, f"the response is larger than {max_bytes} bytes")
        if time.monotonic() > deadline_s:
            raise _failure(shown, f"the transfer took longer than {timeout_s:g} s")
    return bytes(body)


def _chunks(response: requests.Response) -> Iterator[bytes]:
    for chunk in response.iter_content(CHUNK_BYTES):
        assert isinstance(chunk, bytes)  # decode_unicode is off
        yield chunk


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"  # our phrase, never the server's text
    except ValueError:
        return str(code)


def _failure(shown: str, reason: str) -> TemporaryFailure:
    return TemporaryFailure(
        f"fetching the policy from {shown} failed: {reason}",
        hint="the policy in force stays; the next fetch tries again",
    )


def _network_failure(shown: str, error: Exception, timeout_s: float) -> TemporaryFailure:
    """A :class:`TemporaryFailure` saying why, built from the causes of ``error``.

    ``str(error)`` is not used: requests and urllib3 put the full URL, query string
    included, into their messages.
    """
    reason = network_reason(error, timeout_s)
    if reason is not None:
        return _failure(shown, reason)
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return _failure(shown, "the response was cut off")
    return _failure(shown, f"network error ({type(error).__name__})")
