"""A fault-injecting HTTP proxy that sits between an S3 client and a real S3 server.

Why it exists: the job has to survive a bad night on S3 (503 SlowDown, 500s, stalled
reads, bodies cut short, connections reset). Mocking botocore would only test our
idea of those failures; this proxy produces them on the wire, in front of the real
loopback server (``job.demo.locals3.LocalS3``), so boto3, urllib3, tenacity and the
extractor all see exactly what they would see in production.

Usage::

    policy = FaultPolicy(seed=7, rate=0.5, kinds=("slowdown", "truncate"))
    with FaultProxy(s3_server.endpoint_url, policy) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.endpoint_url, ...)
        ...
    print(proxy.stats(), proxy.events)

Design points:

* Transparent when no fault applies: the request line, every header (``Host``
  included, so SigV4 signatures stay valid upstream) and the body go upstream
  unchanged; the response is streamed back in small chunks, never buffered whole.
  Client connections are HTTP/1.1 keep-alive; each request opens its own upstream
  connection, which keeps the proxy simple and cannot leak state between requests.
* Which request gets which fault is decided by a :class:`FaultPolicy`: a pure
  function of (seed, method, path, attempt number for that path). Thread timing can
  change the *order* of requests but never which attempt of which path is faulted,
  so a failing run is replayed by reusing its seed (see ``FaultPolicy.mismatches``).
* :class:`RateLimit` is a token bucket in front of everything, answering 503
  SlowDown above the configured rate, like S3's per-prefix request limits.
* It only ever connects to the loopback upstream it was given.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import os
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Final
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

__all__ = [
    "FAULT_KINDS",
    "PAUSE",
    "RATE_LIMITED",
    "FaultPolicy",
    "FaultProxy",
    "RateLimit",
    "object_key",
]

#: Every fault the proxy knows how to inject.
FAULT_KINDS: Final[tuple[str, ...]] = ("slowdown", "internal", "stall", "truncate", "reset")
#: Not a fault but a hold: the first ``truncate_fraction`` of the body is sent, then the
#: response waits for :meth:`FaultProxy.resume` (tests that must act while a client is
#: mid-body). Never chosen at random: name it in ``kinds`` to use it.
PAUSE: Final = "pause"
#: The ``fault`` recorded in an event when the rate limiter turned the request away.
RATE_LIMITED: Final = "ratelimited"

KeyFilter = Callable[[str], bool] | str | re.Pattern[str] | None

_CHUNK = 64 * 1024
# Headers that describe one hop, not the message; never copied from upstream to client
# because this proxy frames the client's response itself.
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# The proxy already answered ``Expect: 100-continue`` to the client; upstream gets the
# body straight away. No SDK signs Expect (botocore explicitly excludes it).
_REQUEST_DROP: Final = frozenset({"expect"})


def within_bucket(path: str) -> str:
    """A path-style request target without its bucket: ``/bucket-7/a.tar.gz?x`` -> ``a.tar.gz?x``.

    Listings keep their query (``/bucket-7?list-type=2`` -> ``?list-type=2``). The
    proxy assumes path-style addressing, which is what botocore uses for an
    ``http://127.0.0.1`` endpoint. Fault decisions are drawn from this, so a seed
    faults the same objects and listing pages whatever the test's bucket is called
    (test buckets are numbered in the order tests run).
    """
    rest = path.lstrip("/")
    cuts = [i for i in (rest.find("/"), rest.find("?")) if i >= 0]
    if not cuts:
        return ""
    cut = min(cuts)
    return rest[cut + 1 :] if rest[cut] == "/" else rest[cut:]


def object_key(path: str) -> str:
    """The S3 object key of a request: ``/bucket/a/b.tar.gz`` -> ``a/b.tar.gz``.

    Bucket-level requests (``/bucket``, listings) have the empty key.
    """
    target = within_bucket(path)
    return "" if target.startswith("?") else target


@dataclass(frozen=True)
class FaultPolicy:
    """Seeded, replayable decision of which request gets which fault.

    ``decide(method, path, attempt)`` depends on nothing but its arguments and these
    fields, so the same seed always faults the same attempts of the same paths,
    whatever order concurrent requests arrive in.

    Attributes:
        seed: any int; change it to get a different (but again fixed) fault pattern.
        rate: probability in [0, 1] that an eligible attempt is faulted.
        kinds: the faults to choose from (uniformly, by hash) for a faulted attempt.
        first_attempts_only: if true only the first ``first_attempts`` requests for a
            (method, path) are eligible; later ones pass, so a run where most first
            attempts fail still finishes with enough retries. If false every attempt
            is eligible independently.
        first_attempts: how many leading attempts per (method, path) are eligible.
        methods: only requests with these methods are ever faulted (GET by default:
            the object downloads and the ListObjectsV2 pages).
        key_filter: restricts *random* faults to matching object keys; a callable
            ``key -> bool`` or a regex (``re.search`` on the key, see :func:`object_key`).
        persistent_keys: object keys that are faulted on every attempt regardless of
            ``rate``, ``first_attempts_only`` and ``key_filter``, to show that one item
            fails after the configured retries while the rest of the run completes.
    """

    seed: int = 0
    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    first_attempts_only: bool = True
    first_attempts: int = 1
    methods: tuple[str, ...] = ("GET",)
    key_filter: KeyFilter = None
    persistent_keys: Collection[str] = frozenset()

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], got {self.rate}")
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        if not kinds or set(kinds) - {*FAULT_KINDS, PAUSE}:
            raise ValueError(f"kinds must be a non-empty subset of {FAULT_KINDS}, got {kinds}")
        if self.first_attempts < 1:
            raise ValueError("first_attempts must be >= 1")
        # Normalise so that sets/lists are accepted and the policy stays hashable.
        object.__setattr__(self, "kinds", kinds)
        methods = (self.methods,) if isinstance(self.methods, str) else self.methods
        object.__setattr__(self, "methods", tuple(m.upper() for m in methods))
        object.__setattr__(self, "persistent_keys", frozenset(self.persistent_keys))

    def decide(self, method: str, path: str, attempt: int) -> str | None:
        """The fault for this attempt (1-based) of ``method path``, or None to pass it."""
        if method.upper() not in self.methods:
            return None
        key = object_key(path)
        draw, pick = self._draws(method.upper(), within_bucket(path), attempt)
        if key in self.persistent_keys:
            return self.kinds[pick % len(self.kinds)]
        if not self._key_selected(key):
            return None
        if self.first_attempts_only and attempt > self.first_attempts:
            return None
        if draw < self.rate:
            return self.kinds[pick % len(self.kinds)]
        return None

    def schedule(self, method: str, path: str, attempts: int) -> list[str | None]:
        """Decisions for attempts 1..``attempts`` of one path: what a run will hit."""
        return [self.decide(method, path, n) for n in range(1, attempts + 1)]

    def mismatches(self, events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Events whose recorded fault is not what this policy decides for them.

        Empty means the run is explained entirely by this policy: replaying it with the
        same seed faults exactly the same attempts. Rate-limited events are skipped
        (they depend on the clock, not on the policy).
        """
        return [
            event
            for event in events
            if event["attempt"] is not None
            and self.decide(event["method"], event["path"], event["attempt"]) != event["fault"]
        ]

    def _key_selected(self, key: str) -> bool:
        if self.key_filter is None:
            return True
        if isinstance(self.key_filter, str | re.Pattern):
            return re.search(self.key_filter, key) is not None
        return bool(self.key_filter(key))

    def _draws(self, method: str, target: str, attempt: int) -> tuple[float, int]:
        # A cryptographic hash rather than random.Random(hash(...)): hash() of str is
        # salted per process, and we need the same answer in every process.
        material = f"{self.seed}\0{method}\0{target}\0{attempt}".encode()
        digest = hashlib.blake2b(material, digest_size=16).digest()
        draw = int.from_bytes(digest[:8], "big") / 2.0**64
        pick = int.from_bytes(digest[8:], "big")
        return draw, pick


class RateLimit:
    """Token bucket: ``burst`` requests at once, refilled at ``rate_per_sec``.

    The clock is injectable so tests can drive it by hand and assert exact counts
    instead of racing the wall clock.
    """

    def __init__(
        self,
        rate_per_sec: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_sec < 0 or burst < 1:
            raise ValueError("rate_per_sec must be >= 0 and burst >= 1")
        self.rate_per_sec = rate_per_sec
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last: float | None = None
        self._lock = threading.Lock()
        self.accepted = 0
        self.rejected = 0

    def try_acquire(self) -> bool:
        """Take a token if one is available; count the outcome either way."""
        with self._lock:
            now = self._clock()
            if self._last is not None:
                refill = max(0.0, now - self._last) * self.rate_per_sec
                self._tokens = min(float(self.burst), self._tokens + refill)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.accepted += 1
                return True
            self.rejected += 1
            return False


class FaultProxy:
    """Threaded HTTP proxy on 127.0.0.1 (free port) in front of ``upstream_url``.

    Args:
        upstream_url: ``http://127.0.0.1:PORT`` of the real S3 server. Anything that
            is not plain http on a loopback address is refused.
        policy: which request gets which fault; None passes everything through.
        rate_limit: optional token bucket checked before the policy.
        stall_seconds: how long a ``stall`` keeps the connection silent before closing
            it; set it above the client's read timeout. Cut short by :meth:`close`.
        truncate_fraction: share of the body sent before a ``truncate`` closes.
        upstream_timeout: socket timeout towards the upstream server.
        idle_timeout: a client connection silent this long is closed (backstop only;
            :meth:`close` closes live connections itself).

    Observability: ``events`` has one dict per request, in arrival order, with
    ``seq, method, path, key, attempt, fault, status, body_bytes, error, started,
    seconds`` (``status`` is what the proxy sent or began to send, None for stall and
    reset; ``started`` is seconds since the proxy was created and ``seconds`` how long
    the proxy spent on the request, None while in flight: when a client times out,
    these tell a slow upstream from a slow client). ``stats()`` sums them up;
    ``errors`` collects unexpected exceptions inside the proxy (tests should assert it
    is empty).
    """

    def __init__(
        self,
        upstream_url: str,
        policy: FaultPolicy | None = None,
        *,
        rate_limit: RateLimit | None = None,
        stall_seconds: float = 30.0,
        truncate_fraction: float = 0.5,
        upstream_timeout: float = 60.0,
        idle_timeout: float = 120.0,
    ) -> None:
        self.upstream_host, self.upstream_port = _loopback_upstream(upstream_url)
        if not 0.0 <= truncate_fraction < 1.0:
            raise ValueError("truncate_fraction must be within [0, 1)")
        self.policy = policy
        self.rate_limit = rate_limit
        self.stall_seconds = stall_seconds
        self.truncate_fraction = truncate_fraction
        self.upstream_timeout = upstream_timeout
        self.idle_timeout = idle_timeout

        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []

        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._resume = threading.Event()
        self._paused = threading.Condition()
        self.paused: list[dict[str, Any]] = []
        self._attempts: dict[tuple[str, str], int] = {}
        self._by_method: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._passed = 0
        self._rejected = 0
        self._connections = 0
        self._live: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._started_at = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("proxy not started")
        return int(self._server.server_address[1])

    @property
    def endpoint_url(self) -> str:
        """What to give the client as ``endpoint_url``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        if self._server is not None:
            return self
        self._closing.clear()  # in case of a restart after close()
        self._server = _Server(self)
        self._serve_thread = threading.Thread(
            # A short poll interval so close() does not wait half a second per proxy.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"faultproxy-{self.port}-accept",
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def close(self, join_timeout: float = 10.0) -> None:
        """Stop accepting, break every live connection and join every thread."""
        server = self._server
        if server is None:
            return
        self._closing.set()  # wakes stalls; _track() refuses new sockets from now on
        self._resume.set()
        server.shutdown()
        if self._serve_thread is not None:
            self._serve_thread.join(join_timeout)
        with self._lock:
            live = list(self._live)
            threads = list(self._threads)
        for sock in live:
            _shutdown_quietly(sock)
        deadline = time.monotonic() + join_timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        self._server = None
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            self.errors.append(f"threads still alive after close: {stuck}")
            raise RuntimeError(f"faultproxy threads did not exit: {stuck}")

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def wait_paused(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until ``count`` responses are held mid-body (``pause``); their events.

        Each event then has ``client_port``: the client's end of the connection, which
        tells which process holds the response.
        """
        with self._paused:
            if not self._paused.wait_for(lambda: len(self.paused) >= count, timeout):
                raise TimeoutError(f"{len(self.paused)} of {count} responses paused")
            return list(self.paused)

    def resume(self) -> None:
        """Let every held response (and any later one) send the rest of its body."""
        self._resume.set()

    # -- observability ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters: requests, connections, by_method, faults (per kind), passed,
        accepted/rejected (rate limiter; accepted = every request not rejected)."""
        with self._lock:
            total = sum(self._by_method.values())
            return {
                "requests": total,
                "connections": self._connections,
                "by_method": dict(self._by_method),
                "faults": {kind: self._faults[kind] for kind in FAULT_KINDS},
                "passed": self._passed,
                "accepted": total - self._rejected,
                "rejected": self._rejected,
            }

    def decisions(self) -> list[tuple[str, str, int, str | None]]:
        """(method, path, attempt, fault) for every policy decision, sorted: the part of
        a run that must be identical when it is replayed with the same seed."""
        with self._lock:
            rows = [
                (e["method"], e["path"], e["attempt"], e["fault"])
                for e in self.events
                if e["attempt"] is not None
            ]
        return sorted(rows, key=lambda r: (r[0], r[1], r[2]))

    # -- used by the handler threads -------------------------------------------------

    def _admit(self, method: str, path: str) -> dict[str, Any]:
        """Number the attempt, ask the rate limiter and the policy, log the event."""
        with self._lock:
            self._by_method[method] += 1
            attempt: int | None = None
            if self.rate_limit is not None and not self.rate_limit.try_acquire():
                fault: str | None = RATE_LIMITED
                self._rejected += 1
            else:
                attempt = self._attempts.get((method, path), 0) + 1
                self._attempts[(method, path)] = attempt
                fault = self.policy.decide(method, path, attempt) if self.policy else None
                if fault is None:
                    self._passed += 1
                else:
                    self._faults[fault] += 1
            event: dict[str, Any] = {
                "seq": len(self.events),
                "method": method,
                "path": path,
                "key": object_key(path),
                "attempt": attempt,
                "fault": fault,
                "status": None,
                "body_bytes": 0,
                "error": None,
                "started": round(time.monotonic() - self._started_at, 6),
                "seconds": None,
            }
            self.events.append(event)
            return event

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._closing.is_set():
                self._live.add(sock)
                return
        _shutdown_quietly(sock)  # raced with close(): do not let it block a join

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._live.discard(sock)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        with self._lock:
            self._connections += 1
            name = f"faultproxy-{self.port}-conn-{self._connections}"
            self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(target=target, args=args, name=name, daemon=True)
            self._threads.append(thread)
        thread.start()

    def _record_error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)


class _Server(socketserver.TCPServer):
    """TCPServer with one named, tracked thread per connection.

    Not ``http.server.HTTPServer``: its ``server_bind`` does a reverse DNS lookup.
    """

    allow_reuse_address = True
    request_queue_size = 128  # bursts of parallel connections must not hit SYN retries

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.proxy._spawn(self._process_in_thread, request, client_address)

    def _process_in_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return  # the client went away or idled out: normal for a proxy
        self.proxy._record_error(traceback.format_exc())


class _BadRequest(Exception):
    """The client sent a body we cannot frame (bad Content-Length or chunk size)."""


class _ClientGone(ConnectionError):
    """The client closed its connection in the middle of sending a request body."""


class _Handler(BaseHTTPRequestHandler):
    """One client connection; ``handle()`` loops over keep-alive requests."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def setup(self) -> None:
        self.proxy = self.server.proxy
        self.timeout = self.proxy.idle_timeout
        super().setup()
        self.proxy._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.proxy._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line; ``proxy.events`` is the log."""

    # Every method goes through the same path; S3 uses these.
    def _proxy(self) -> None:
        target = _origin_form(self.path)
        path = unquote(urlsplit(target).path)
        event = self.proxy._admit(self.command, path)
        fault = event["fault"]
        began = time.monotonic()
        try:
            if fault in (RATE_LIMITED, "slowdown"):
                self._copy_request_body(None)
                self._send_s3_error(
                    event, 503, "Slow Down", "SlowDown", "Please reduce your request rate."
                )
            elif fault == "internal":
                self._copy_request_body(None)
                self._send_s3_error(
                    event,
                    500,
                    "Internal Server Error",
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                )
            elif fault == "stall":
                self._copy_request_body(None)
                self.close_connection = True
                self.proxy._closing.wait(self.proxy.stall_seconds)
            elif fault == "reset":
                self._copy_request_body(None)
                self._reset()
            else:
                self._forward(target, event, fault=fault)
        except _BadRequest as exc:
            event["error"] = f"bad request: {exc}"
            self.close_connection = True
            self._send_quietly(event, 400, "Bad Request", "BadRequest", str(exc))
        except (OSError, http.client.HTTPException) as exc:
            # Either side hung up or timed out mid-message: the connection is unusable.
            event["error"] = repr(exc)
            self.close_connection = True
        finally:
            event["seconds"] = round(time.monotonic() - began, 6)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _proxy

    # -- faults ----------------------------------------------------------------------

    def _send_s3_error(
        self, event: dict[str, Any], status: int, reason: str, code: str, message: str
    ) -> None:
        """An error response the way S3 writes one, so botocore parses the Code."""
        request_id = f"FAULTPROXY{event['seq']:010d}"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
            f"<Resource>{escape(event['path'])}</Resource>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        headers = [
            ("Content-Type", "application/xml"),
            ("Content-Length", str(len(body))),
            ("x-amz-request-id", request_id),
            ("Date", formatdate(usegmt=True)),
            ("Server", "faultproxy"),
        ]
        head = self._head(status, reason, headers)
        event["status"] = status
        if self.command == "HEAD":
            self.wfile.write(head)
        else:
            self.wfile.write(head + body)
            event["body_bytes"] = len(body)

    def _send_quietly(
        self, event: dict[str, Any], status: int, reason: str, code: str, message: str
    ) -> None:
        with contextlib.suppress(OSError):
            self._send_s3_error(event, status, reason, code, message)

    def _reset(self) -> None:
        """Abort with RST: SO_LINGER 0, then really close the descriptor.

        ``socket.close()`` would only mark the socket closed while ``rfile``/``wfile``
        still reference it, so detach the descriptor and close that instead.
        """
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.proxy._untrack(self.connection)
        os.close(self.connection.detach())

    # -- pass-through ----------------------------------------------------------------

    def _forward(self, target: str, event: dict[str, Any], *, fault: str | None) -> None:
        upstream = http.client.HTTPConnection(
            self.proxy.upstream_host, self.proxy.upstream_port, timeout=self.proxy.upstream_timeout
        )
        try:
            try:
                upstream.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in _REQUEST_DROP:
                        upstream.putheader(name, value)
                upstream.endheaders()
                assert upstream.sock is not None
                upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.proxy._track(upstream.sock)
                self._copy_request_body(upstream.send)
                response = upstream.getresponse()
            except _ClientGone:
                raise  # nobody left to send a 502 to
            except (OSError, http.client.HTTPException) as exc:
                event["error"] = f"upstream: {exc!r}"
                self.close_connection = True
                self._send_quietly(event, 502, "Bad Gateway", "BadGateway", "upstream failed")
                return
            self._relay(response, event, truncate=fault == "truncate", pause=fault == PAUSE)
        finally:
            if upstream.sock is not None:
                self.proxy._untrack(upstream.sock)
            upstream.close()

    def _relay(
        self,
        response: http.client.HTTPResponse,
        event: dict[str, Any],
        *,
        truncate: bool,
        pause: bool = False,
    ) -> None:
        """Stream the upstream response to the client, or a truncated version of it."""
        event["status"] = response.status
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        headers = [
            (name, value)
            for name, value in response.getheaders()
            if name.lower() not in _HOP_BY_HOP
        ]
        length = None if response.chunked else response.length
        # Without a length from upstream the client gets chunked framing, so that a
        # truncation is still detectable (HTTP/1.0 clients get close-delimited bodies).
        rechunk = not no_body and length is None and self.request_version != "HTTP/1.0"
        if rechunk:
            headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
            headers.append(("Transfer-Encoding", "chunked"))
        elif not no_body and length is None:
            self.close_connection = True
        if truncate:
            self.close_connection = True
        head = self._head(response.status, response.reason, headers)

        if truncate and (no_body or length == 0):
            # Nothing to cut in the body, so cut the response inside its status line.
            # (Cutting later in the header block is invisible: http.client takes EOF as
            # the end of the headers and happily returns a response with fewer of them.)
            self.wfile.write(head[: head.index(b"\r\n") // 2])
            return
        self.wfile.write(head)
        if no_body:
            return

        if length is not None and pause:
            first = int(length * self.proxy.truncate_fraction)
            self._pump(response, event, first, rechunk=False)
            self.wfile.flush()
            self._hold(event)
            self._pump(response, event, length - first, rechunk=False)
            event["body_bytes"] = length
            return
        if length is not None:
            limit = length
            if truncate:
                limit = min(int(length * self.proxy.truncate_fraction), length - 1)
            self._pump(response, event, limit, rechunk=False)
            return
        # Unknown length: re-chunk; a truncation sends one chunk and no terminator.
        self._pump(response, event, _CHUNK if truncate else None, rechunk=rechunk)
        if rechunk and not truncate:
            self.wfile.write(b"0\r\n\r\n")

    def _pump(
        self,
        response: http.client.HTTPResponse,
        event: dict[str, Any],
        limit: int | None,
        *,
        rechunk: bool,
    ) -> None:
        """Copy up to ``limit`` body bytes (all of them if None), one buffer at a time."""
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        sent = 0
        while limit is None or sent < limit:
            want = _CHUNK if limit is None else min(_CHUNK, limit - sent)
            n = response.readinto(view[:want])
            if not n:
                if limit is not None and not rechunk:
                    raise http.client.IncompleteRead(b"", limit - sent)
                break
            if rechunk:
                self.wfile.write(b"%x\r\n" % n)
                self.wfile.write(view[:n])
                self.wfile.write(b"\r\n")
            else:
                self.wfile.write(view[:n])
            sent += n
            event["body_bytes"] = sent

    def _hold(self, event: dict[str, Any]) -> None:
        event["client_port"] = self.client_address[1]
        with self.proxy._paused:
            self.proxy.paused.append(event)
            self.proxy._paused.notify_all()
        self.proxy._resume.wait()

    # -- request side ----------------------------------------------------------------

    def _copy_request_body(self, sink: Callable[[bytes], object] | None) -> None:
        """Read the request body, framing included, into ``sink`` (or discard it).

        Always read it, even when answering with a fault, so the keep-alive connection
        stays in step and closing it does not turn into an RST over unread data.
        """
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self._read_line()
                _emit(sink, line)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise _BadRequest("bad chunk size") from exc
                if size == 0:
                    while True:  # optional trailers, then the blank line
                        trailer = self._read_line()
                        _emit(sink, trailer)
                        if trailer in (b"\r\n", b"\n"):
                            return
                self._copy_exact(size + 2, sink)  # chunk data and its CRLF
        raw_length = self.headers.get("Content-Length")
        try:
            length = int(raw_length) if raw_length else 0
        except ValueError as exc:
            raise _BadRequest("bad Content-Length") from exc
        if length < 0:
            raise _BadRequest("bad Content-Length")
        self._copy_exact(length, sink)

    def _read_line(self) -> bytes:
        line = self.rfile.readline(65537)
        if not line.endswith(b"\n"):
            raise _ClientGone("client closed mid-body")
        return line

    def _copy_exact(self, count: int, sink: Callable[[bytes], object] | None) -> None:
        while count:
            data = self.rfile.read(min(count, _CHUNK))
            if not data:
                raise _ClientGone("client closed mid-body")
            _emit(sink, data)
            count -= len(data)

    def _head(self, status: int, reason: str, headers: list[tuple[str, str]]) -> bytes:
        lines = [f"{self.protocol_version} {status} {reason}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers]
        if self.close_connection:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")


def _emit(sink: Callable[[bytes], object] | None, data: bytes) -> None:
    if sink is not None:
        sink(data)


def _origin_form(target: str) -> str:
    """``http://host/p?q`` -> ``/p?q``: the proxy never lets the client pick the upstream."""
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return target


def _loopback_upstream(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"upstream must be an http:// URL, got {url!r}")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"upstream must not have a path or query, got {url!r}")
    host = parts.hostname
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"upstream must be on loopback, got {host!r}")
    return host, parts.port or 80


def _shutdown_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed or never connected
        sock.shutdown(socket.SHUT_RDWR)
