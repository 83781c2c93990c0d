"""`RetryPolicy`: when the SDK sends a request again by itself, and how long it waits first.

- `429 RATE_LIMITED`: the server did not act on the request, so any request is sent again after
  the `Retry-After` the server asked for, unless that is longer than `max_retry_after`.
- A connection error, a timeout or `502/503/504`: the request may or may not have been applied,
  so only idempotent requests are sent again (GET, PUT, DELETE, and `send`, whose message id
  makes a second copy impossible), after an exponential backoff with jitter.

ChatClient(url, token=jwt, retry=RetryPolicy(max_retries=5, max_retry_after=10))
ChatClient(url, token=jwt, retry=RetryPolicy.never())
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cariosan_client.errors import CariosanError, RateLimited, TransportError, Unavailable

__all__ = ["IDEMPOTENT_METHODS", "RetryPolicy", "backoff"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def backoff(attempt: int, first: float, cap: float) -> float:
    """The pause before retry number `attempt` (0-based): `first` doubling up to `cap`, spread
    over 50-100 % so that clients that failed together do not come back together."""
    return min(first * 2.0**attempt, cap) * (0.5 + random.random() / 2)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and after how long a failed request is sent again (see the module doc)."""

    # Retries after the first attempt; 0 never retries.
    max_retries: int = 3
    # First pause after a connection error or 5xx unavailability; it doubles up to `max_backoff`.
    first_backoff: float = 0.5
    max_backoff: float = 8.0
    # A 429 whose Retry-After is longer than this is raised at once (`RateLimited.retry_after`),
    # rather than blocking the caller for minutes.
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        values = (self.max_retries, self.first_backoff, self.max_backoff, self.max_retry_after)
        if min(values) < 0:
            raise ValueError(f"RetryPolicy values must not be negative: {self}")

    @classmethod
    def never(cls) -> RetryPolicy:
        """Every error is raised at once."""
        return cls(max_retries=0)

    def delay(self, attempt: int, error: CariosanError, *, idempotent: bool) -> float | None:
        """Seconds to wait before sending again after `error` on retry number `attempt`
        (0-based), or None to raise it."""
        if attempt >= self.max_retries:
            return None
        if isinstance(error, RateLimited):
            if error.retry_after is None:
                return backoff(attempt, self.first_backoff, self.max_backoff)
            return error.retry_after if error.retry_after <= self.max_retry_after else None
        if isinstance(error, TransportError | Unavailable) and idempotent:
            # A 503 may say when the store is expected back.
            if error.retry_after is not None and error.retry_after <= self.max_retry_after:
                return error.retry_after
            return backoff(attempt, self.first_backoff, self.max_backoff)
        return None
