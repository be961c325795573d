"""A small load generator on threads and http.client: closed loop for the maximum rate, open loop for latency.

Each request is built by a `make_request(seq) -> (path, body, headers)` callable, so every request carries
unique event ids (no duplicates) and a fresh signature. The open loop measures each latency from the moment
the request was due, not when a thread got round to it, so a slow server cannot hide its queueing.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.bench.common import percentile

RequestMaker = Callable[[int], tuple[str, bytes, dict]]


@dataclass
class LoadResult:
    seconds: float
    requests: int = 0
    events: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def post(port: int, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    """One POST on a new connection (gunicorn's sync workers close every connection anyway)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class _Recorder:
    def __init__(self, seconds: float) -> None:
        self.result = LoadResult(seconds=seconds)
        self.lock = threading.Lock()

    def record(self, status: int, data: bytes, latency_ms: float) -> None:
        accepted = 0
        if status == 200:
            accepted = int(json.loads(data).get("accepted", 0))
        with self.lock:
            if status == 200:
                self.result.requests += 1
                self.result.events += accepted
                self.result.latencies_ms.append(latency_ms)
            else:
                self.result.errors += 1
                if len(self.result.error_samples) < 3:
                    self.result.error_samples.append(f"{status} {data[:200]!r}")


def closed_loop(
    port: int, make_request: RequestMaker, seconds: float, concurrency: int, seq: itertools.count
) -> LoadResult:
    """`concurrency` threads each send the next request as soon as the last is answered, for `seconds`."""
    recorder = _Recorder(seconds)
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        while time.perf_counter() < deadline:
            path, body, headers = make_request(next(seq))
            started = time.perf_counter()
            try:
                status, data = post(port, path, body, headers)
            except OSError as exc:
                status, data = 0, str(exc).encode()
            recorder.record(status, data, (time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Requests in flight at the deadline finish after it: divide by the time really taken.
    recorder.result.seconds = time.perf_counter() - started
    return recorder.result


def open_loop(
    port: int, make_request: RequestMaker, rate: float, seconds: float, threads: int, seq: itertools.count
) -> LoadResult:
    """Requests due at a fixed `rate` per second for `seconds`; latency counted from each request's due time."""
    recorder = _Recorder(seconds)
    total = max(1, int(rate * seconds))
    slots = itertools.count()
    start = time.perf_counter() + 0.05

    def worker() -> None:
        while (slot := next(slots)) < total:
            due = start + slot / rate
            path, body, headers = make_request(next(seq))
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                status, data = post(port, path, body, headers)
            except OSError as exc:
                status, data = 0, str(exc).encode()
            recorder.record(status, data, (time.perf_counter() - due) * 1000)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    recorder.result.seconds = time.perf_counter() - start
    return recorder.result
