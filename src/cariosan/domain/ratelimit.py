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
        log.warning("rate_limit_unavailable", error=exc.__class__.__name__)
        return []
    for state in states:
        if not state.allowed:
            raise RateLimited(
                f"rate limit of {state.window.limit} per {state.window.seconds} s exceeded",
                retry_after=state.reset_in,
                limit=state.window.limit,
            )
    return states


async def check_request(store: EphemeralStore, limits: Limits, caller: Caller) -> WindowState:
    """Count one request; raises RATE_LIMITED. Returns the window to report in headers."""
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
    states = await _hit(store, windows)
    if not states:
        return WindowState(windows[0], 0, 60)
    return states[0]


async def check_message(store: EphemeralStore, limits: Limits, caller: Caller) -> None:
    """The burst limit on sending messages, per user."""
    if caller.user_id is None:
        return
    await _hit(
        store,
        [Window(f"msg:{caller.workspace_id}:{caller.user_id}", limits.user_messages_per_second, 1)],
    )
