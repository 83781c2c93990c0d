"""`cariosan healthcheck`: the image's Docker HEALTHCHECK. Standard library only (no curl in a
distroless image, and it must start fast).

By default it asks `/readyz` (readiness: migrations done, PostgreSQL reachable), so a container
is healthy, and compose starts what depends on it, only once it can serve requests. `--live`
asks `/healthz` (liveness: the process answers) for orchestrators that probe both."""

from __future__ import annotations

import urllib.error
import urllib.request

READINESS = "/readyz"
LIVENESS = "/healthz"


def local_url(host: str, port: int, path: str = READINESS) -> str:
    # A server bound to every interface is reached on loopback.
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def check(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """(healthy, one line saying what was seen)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only)
            status = response.status
    except urllib.error.HTTPError as exc:
        return False, f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{url} did not answer: {reason}"
    if status == 200:
        return True, f"{url} answered 200"
    return False, f"{url} answered {status}"
