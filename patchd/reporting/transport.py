"""HTTP to the collector: one connection-reusing session, verified TLS, bounded everything.

Requests go through one :class:`requests.Session`, so a flush of many reports reuses one
connection (a TLS handshake per report would cost more than the report). TLS is always
verified — against the system's CAs, or the agent configuration's ``reporting.ca_file``
for a private CA; there is no switch to turn it off. Connect and read timeouts bound every
request, and answers are read up to a small cap: the agent needs the status, a few
headers and at most a short JSON object. Messages name the collector as
``scheme://host:port/path`` and never quote what the server sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import requests
import urllib3

from patchd import __version__, neterrors
from patchd.config import policy_url_problem, redact_url
from patchd.errors import ConfigError, TemporaryFailure

MAX_ANSWER_BYTES = 64 * 1024  # an enrolment answer or an error body; anything beyond is ignored
CHUNK_BYTES = 16 * 1024
HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "identity",
    "Content-Type": "application/json",
    "User-Agent": f"patchd/{__version__}",
}


def collector_url_problem(url: object) -> str | None:
    """Why ``url`` cannot be a collector's base URL, or ``None``.

    The rules of policy URLs (https; plain http only to this machine; no credentials),
    and no query string or fragment: the token travels in the request body, never in a
    URL that could end up in a log.
    """
    problem = policy_url_problem(url)
    if problem is not None:
        return problem
    assert isinstance(url, str)
    parts = urlsplit(url)
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query string or fragment"
    return None


def endpoint_url(base_url: str, path: str) -> str:
    """``base_url`` (with or without a trailing slash) joined with an API path."""
    return base_url.rstrip("/") + path


@dataclass(frozen=True)
class Answer:
    """What the collector said: a status, the headers patchd reads, and a capped body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def phrase(self) -> str:
        """``"409 Conflict"``: our words for the status, never the server's."""
        try:
            return f"{self.status} {HTTPStatus(self.status).phrase}"
        except ValueError:
            return str(self.status)


class CollectorClient:
    """POSTs JSON to one collector over a reused connection. Close it (or use ``with``)."""

    def __init__(self, base_url: str, *, ca_file: Path | None, timeout_s: float) -> None:
        problem = collector_url_problem(base_url)
        if problem is not None:
            raise ConfigError(
                f"collector URL {redact_url(base_url)}: {problem}",
                hint="give the collector's base URL, e.g. https://collector.example:8443",
            )
        if ca_file is not None and not ca_file.is_file():
            raise ConfigError(
                f"reporting.ca_file {ca_file}: no such file",
                hint="give the PEM file of the CA that signed the collector's certificate",
            )
        self.base_url = base_url
        self.shown = redact_url(base_url)
        self.timeout_s = timeout_s
        self._verify: str | bool = str(ca_file) if ca_file is not None else True
        self._session = requests.Session()

    def __enter__(self) -> CollectorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def post(self, path: str, body: bytes) -> Answer:
        """POST ``body`` to ``path``; the answer, whatever its status.

        Raises :class:`TemporaryFailure` when no answer came: a network or TLS failure,
        a timeout, a connection closed early.
        """
        url = endpoint_url(self.base_url, path)
        try:
            with self._session.post(
                url,
                data=body,
                headers=HEADERS,
                timeout=(self.timeout_s, self.timeout_s),
                stream=True,
                allow_redirects=False,  # a report goes where the endpoint enrolled, nowhere else
                verify=self._verify,
            ) as response:
                return Answer(
                    status=response.status_code,
                    headers={k.lower(): v for k, v in response.headers.items()},
                    body=_read_capped(response),
                )
        except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
            raise TemporaryFailure(
                f"{endpoint_url(self.shown, path)}: {network_reason(e, self.timeout_s)}",
                hint="the collector is unreachable; reports stay queued and are retried",
            ) from None


def _read_capped(response: requests.Response) -> bytes:
    body = bytearray()
    for chunk in _chunks(response):
        body += chunk
        if len(body) >= MAX_ANSWER_BYTES:
            return bytes(body[:MAX_ANSWER_BYTES])
    return bytes(body)


def _chunks(response: requests.Response) -> Iterator[bytes]:
    for chunk in response.iter_content(CHUNK_BYTES):
        assert isinstance(chunk, bytes)  # decode_unicode is off
        yield chunk


def network_reason(error: Exception, timeout_s: float) -> str:
    """Why no answer came, from the causes of ``error``, without the URL requests quotes."""
    reason = neterrors.network_reason(error, timeout_s)
    if reason is not None:
        return reason
    if isinstance(error, requests.ConnectionError):
        return "the connection was closed before an answer"
    return f"network error ({type(error).__name__})"
