"""Rate limits with the `limits` library: a moving window per key, kept in memory (this
process) or in Redis (`redis://...`, shared by every process and host of the service)."""

from __future__ import annotations

import time

from limits import parse, storage, strategies


class RateLimiter:
    """`per_minute` hits per key in any sixty seconds."""

    def __init__(self, per_minute: int, storage_url: str | None = None) -> None:
        self.per_minute = per_minute
        self.storage_url = storage_url or "memory://"
        self.limit = parse(f"{per_minute}/minute")
        self._strategy = strategies.MovingWindowRateLimiter(
            storage.storage_from_string(self.storage_url)
        )

    def allow(self, key: str) -> bool:
        """Count a hit for key if it is under the limit; False (and no hit) if it is not."""
        return self._strategy.hit(self.limit, key)

    def test(self, key: str) -> bool:
        """Whether a hit for key would be allowed now (counts nothing)."""
        return self._strategy.test(self.limit, key)

    def hit(self, key: str) -> None:
        self._strategy.hit(self.limit, key)

    def reset(self) -> None:
        """Forget every count (tests, and an operator clearing a lockout)."""
        self._strategy.storage.reset()

    def retry_after(self, key: str) -> int:
        """Seconds until key may hit again (at least 1)."""
        reset, _remaining = self._strategy.get_window_stats(self.limit, key)
        return max(1, int(reset - time.time()) + 1)
