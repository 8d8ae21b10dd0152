"""Slow the whole run down when S3 says "slow down", instead of every worker retrying at full speed.

Each worker asks the :class:`AdaptiveThrottle` before every request. Two knobs
adapt, in the spirit of botocore's adaptive retry mode:

* concurrency: halved on a throttling answer (SlowDown, 503, 429), grown back by
  one slot after a run of successes (additive increase, multiplicative decrease);
* request rate: once throttled, requests are spaced by a token bucket whose rate
  starts at a fraction of the rate that was being sent, and grows while requests
  succeed; when it has grown well past the measured demand the bucket is retired.

Without throttling it costs one lock acquisition per request.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class AdaptiveThrottle:
    def __init__(
        self,
        max_concurrency: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        min_rate: float = 0.5,
        backoff: float = 0.7,
        adaptive: bool = True,
    ) -> None:
        self.adaptive = adaptive
        self.max_concurrency = max(1, max_concurrency)
        self.limit = self.max_concurrency
        self._in_flight = 0
        self._successes = 0
        self._cond = threading.Condition()
        self._clock = clock
        self._sleep = sleep or time.sleep
        self._min_rate = min_rate
        self._backoff = backoff
        self.rate: float | None = None  # requests/second once throttled; None = unlimited
        self._next_slot = 0.0
        self._recent: deque[float] = deque()
        self.throttle_events = 0

    # -- measurement -----------------------------------------------------------
    def _note_send(self, now: float) -> None:
        self._recent.append(now)
        while self._recent and now - self._recent[0] > 1.0:
            self._recent.popleft()

    def _measured_rate(self) -> float:
        return float(len(self._recent))

    # -- worker API ------------------------------------------------------------
    def acquire(self, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Wait for a slot (and a token, when rate-limited). False if cancelled meanwhile."""
        with self._cond:
            while self._in_flight >= self.limit:
                if cancelled():
                    return False
                self._cond.wait(0.2)
            self._in_flight += 1
            now = self._clock()
            delay = 0.0
            if self.rate is not None:
                slot = max(now, self._next_slot)
                self._next_slot = slot + 1.0 / self.rate
                delay = slot - now
            self._note_send(now + delay)
        if delay > 0:
            self._sleep(delay)
        return not cancelled()

    def release(self, *, throttled: bool = False) -> None:
        with self._cond:
            self._in_flight -= 1
            if not self.adaptive:
                self.throttle_events += int(throttled)
            elif throttled:
                self.throttle_events += 1
                self._successes = 0
                self.limit = max(1, self.limit // 2)
                sent = max(self._measured_rate(), self._min_rate)
                current = self.rate if self.rate is not None else sent
                self.rate = max(self._min_rate, min(current, sent) * self._backoff)
            else:
                self._successes += 1
                if self._successes >= self.limit and self.limit < self.max_concurrency:
                    self.limit += 1
                    self._successes = 0
                if self.rate is not None:
                    # Slow additive growth (about 5% a second near 20 req/s) so the
                    # rate settles just under what the server accepts.
                    self.rate += 0.05
                    if (
                        self.rate > 4 * max(self._measured_rate(), 1.0)
                        and self.limit >= self.max_concurrency
                    ):
                        self.rate = None
            self._cond.notify_all()
