"""How often a guest of a shared link may send: a sliding hour per key.

limiter = RateLimiter(per_hour=20)
limiter.check(user_key)          # raises Rejected (a sentence for people) past the limit
"""

from __future__ import annotations

import collections
import threading
import time

from chat_app.uploads import Rejected


class RateLimiter:
    """At most `per_hour` events per key in any hour (guests of a shared link)."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._events: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def check(self, key: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            events = self._events[key]
            while events and events[0] <= now - 3600:
                events.popleft()
            if len(events) >= self.per_hour:
                wait = int(events[0] + 3600 - now) // 60 + 1
                raise Rejected(
                    f"Guests of this shared link may send {self.per_hour} "
                    f"message{'s' if self.per_hour != 1 else ''} an hour; "
                    f"try again in {wait} minute{'s' if wait != 1 else ''}."
                )
            events.append(now)
