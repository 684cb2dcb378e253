"""Rate limits with the `limits` library: a moving window per key, kept in memory (this
process) or in Redis (`redis://...`, shared by every process and host of the service)."""

from __future__ import annotations

import time

from limits import parse, storage, strategies

from governance.errors import TooManyRequests


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

    def close(self) -> None:
        """Close the connections to the storage (Redis); memory keeps nothing open."""
        client = getattr(self._strategy.storage, "storage", None)
        closer = getattr(client, "close", None)
        if closer is not None:
            closer()

    def reset(self) -> None:
        """Forget every count (tests, and an operator clearing a lockout)."""
        self._strategy.storage.reset()

    def retry_after(self, key: str) -> int:
        """Seconds until key may hit again (at least 1)."""
        reset, _remaining = self._strategy.get_window_stats(self.limit, key)
        return max(1, int(reset - time.time()) + 1)


class QueryLimits:
    """The gateway's limits: requests and tokens per minute, per principal and per family.

    Requests count when admitted; tokens (prompt and answer) count when the answer is known,
    and a principal or family whose tokens of the last minute reached the limit is refused
    until the window frees. The counts live where `requests` keeps its own (memory or Redis),
    so every process of the service sees the same.
    """

    def __init__(self, requests: RateLimiter, tokens_per_minute: int = 0) -> None:
        self.requests = requests
        self.tokens_per_minute = tokens_per_minute
        self._strategy = requests._strategy

    def _window(self, per_minute: int):
        return parse(f"{per_minute}/minute")

    def _refuse(self, what: str, per_minute: int, key: str) -> TooManyRequests:
        reset, _left = self._strategy.get_window_stats(self._window(per_minute), key)
        return TooManyRequests(
            f"{what} of {per_minute} a minute reached",
            retry_after=max(1, int(reset - time.time()) + 1),
            details={"limit": what, "per_minute": per_minute},
        )

    def admit(self, principal: str, family: str, family_limits) -> None:
        """Count a request, or raise TooManyRequests naming the limit it would pass."""
        token_checks = [
            ("the principal's tokens", self.tokens_per_minute, f"tokens:principal:{principal}"),
            (
                "the family's tokens",
                int(family_limits.get("tokens_per_minute", 0)),
                f"tokens:family:{family}",
            ),
        ]
        for what, per_minute, key in token_checks:
            if per_minute and not self._strategy.test(self._window(per_minute), key):
                raise self._refuse(what, per_minute, key)
        if not self.requests.allow(principal):
            raise TooManyRequests(
                f"{principal} sent more than {self.requests.per_minute} queries in a minute",
                retry_after=self.requests.retry_after(principal),
                details={"limit": "the principal's requests"},
            )
        family_requests = int(family_limits.get("requests_per_minute", 0))
        key = f"requests:family:{family}"
        if family_requests and not self._strategy.hit(self._window(family_requests), key):
            raise self._refuse("the family's requests", family_requests, key)

    def spend(self, principal: str, family: str, family_limits, tokens: int) -> None:
        """Count the tokens of an answer (a window may go over by this one answer)."""
        if tokens <= 0:
            return
        for per_minute, key in (
            (self.tokens_per_minute, f"tokens:principal:{principal}"),
            (int(family_limits.get("tokens_per_minute", 0)), f"tokens:family:{family}"),
        ):
            if per_minute:
                window = self._window(per_minute)
                # A moving window refuses a hit larger than what is left; count what fits,
                # so the window fills and the next request waits.
                _reset, left = self._strategy.get_window_stats(window, key)
                cost = min(tokens, max(left, 0))
                if cost:
                    self._strategy.hit(window, key, cost=cost)
