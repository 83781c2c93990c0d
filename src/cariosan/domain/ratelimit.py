"""Rate limits per user and per workspace (API.md defaults, configurable per deployment)."""

from __future__ import annotations

import time

from cariosan.config import Limits
from cariosan.domain.auth import Caller
from cariosan.ephemeral.store import EphemeralStore, Window, WindowState
from cariosan.errors import RateLimited
from cariosan.obs.logging import get_logger

log = get_logger("cariosan.ratelimit")


async def _hit(store: EphemeralStore, windows: list[Window]) -> list[WindowState]:
    try:
        states = await store.hit(windows, time.time())
    except Exception as exc:
        # Counters are throwaway state: with Redis down, chat keeps working unthrottled rather
        # than failing every request.
        log.warning("rate_limit_unavailable", error=exc.__class__.__name__, exc_info=exc)
        return []
    for state in states:
        if not state.allowed:
            raise RateLimited(
                f"rate limit of {state.window.limit} per {state.window.seconds} s exceeded",
                retry_after=state.reset_in,
                limit=state.window.limit,
            )
    return states


async def check_request(
    store: EphemeralStore, limits: Limits, caller: Caller, *, sends_message: bool = False
) -> WindowState:
    """Count one request, and with `sends_message` one message against the caller's burst
    limit (in the same round trip to the store); raises RATE_LIMITED. Returns the window to
    report in headers."""
    windows = [
        Window(f"ws:{caller.workspace_id}", limits.workspace_requests_per_minute, 60),
    ]
    if caller.user_id is not None:
        windows.insert(
            0,
            Window(
                f"u:{caller.workspace_id}:{caller.user_id}", limits.user_requests_per_minute, 60
            ),
        )
        if sends_message:
            windows.append(
                Window(
                    f"msg:{caller.workspace_id}:{caller.user_id}",
                    limits.user_messages_per_second,
                    1,
                )
            )
    states = await _hit(store, windows)
    if not states:
        return WindowState(windows[0], 0, 60)
    return states[0]


class AuthFailures:
    """Failed authentications per client address: past the limit in a minute, every request
    from that address is RATE_LIMITED until the minute ends, even with a right credential
    (so guessing gains nothing). Counted in the shared store; each process remembers the
    addresses it saw over the limit, so a request costs no extra round trip."""

    MAX_BLOCKED = 100_000

    def __init__(self, store: EphemeralStore, limits: Limits) -> None:
        self.store = store
        self.limit = limits.auth_failures_per_minute
        self._blocked: dict[str, float] = {}

    def check(self, address: str) -> None:
        """Raise RATE_LIMITED while `address` is over the limit."""
        until = self._blocked.get(address)
        if until is None:
            return
        left = until - time.monotonic()
        if left <= 0:
            del self._blocked[address]
            return
        raise RateLimited(
            f"too many failed authentications from this address (limit {self.limit} per 60 s)",
            retry_after=max(1, round(left)),
            limit=self.limit,
        )

    async def failed(self, address: str) -> None:
        """Count one failure of `address`; raise RATE_LIMITED once it is over the limit."""
        try:
            [state] = await self.store.hit(
                [Window(f"authfail:{address}", self.limit, 60)], time.time()
            )
        except Exception as exc:
            log.warning("rate_limit_unavailable", error=exc.__class__.__name__, exc_info=exc)
            return
        if state.allowed:
            return
        now = time.monotonic()
        if len(self._blocked) >= self.MAX_BLOCKED:
            self._blocked = {a: u for a, u in self._blocked.items() if u > now}
            if len(self._blocked) >= self.MAX_BLOCKED:
                self._blocked.clear()
        self._blocked[address] = now + state.reset_in
        self.check(address)
