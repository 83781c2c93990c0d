"""Structured logs: one JSON object per line on stdout, with no credential in any line.

Every line, ours and the libraries' (uvicorn logs WebSocket URLs with `?token=`, websockets logs
request headers at debug, httpx logs receiver URLs with their query string), goes through
`scrub` after rendering: query-string values, bearer credentials, JWTs, API and webhook
secrets, passwords in URLs and S3 signatures are replaced by `[redacted]`.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


REDACTED = "[redacted]"
# Values stop at a backslash too: in a rendered JSON line a quote inside a string is `\"`.
_SCRUBS: list[tuple[re.Pattern[str], str]] = [
    # A JWT anywhere (three base64url parts, the header always starts with `{"` = eyJ).
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # Workspace API secrets and webhook signing secrets.
    (re.compile(r"\b(cs|whsec)_[A-Za-z0-9+/=_-]{8,}"), REDACTED),
    # Authorization header values: `Bearer x`, `Basic x`, AWS SigV4 `Credential=… Signature=…`.
    (re.compile(r"(?i)\b(bearer|basic)(\s+|%20)[^\s\"',\\]+"), r"\1 " + REDACTED),
    (
        re.compile(r"(?i)\b(signature|credential|x-amz-security-token)=[^\s\"',&\\]+"),
        r"\1=" + REDACTED,
    ),
    (
        re.compile(r"(?i)(authorization|cookie|x-api-key)(\\?\"?\s*[:=]\s*\\?\"?)[^\"\n\\]+"),
        r"\1\2" + REDACTED,
    ),
    # Every query-string value (receiver keys, tokens, presigned URL signatures).
    (re.compile(r"([?&][^=&\s\"'#?\\]{1,100}=)[^&\s\"'#\\]*"), r"\1" + REDACTED),
    # A password in a URL: scheme://user:password@host.
    (re.compile(r"(://[^:/@\s\"'\\]+:)[^@\s\"'\\]+@"), r"\1" + REDACTED + "@"),
]


def scrub(line: str) -> str:
    """`line` without credentials (see the module docstring)."""
    for pattern, replacement in _SCRUBS:
        line = pattern.sub(replacement, line)
    return line


def _scrubbed(render: Callable[..., Any]) -> Callable[..., str]:
    def render_scrubbed(logger: Any, method: str, event: dict[str, Any]) -> str:
        return scrub(str(render(logger, method, event)))

    return render_scrubbed


# Libraries that log request details (URLs, headers, frames, signing steps) below INFO; they
# stay at INFO or above whatever the level, on top of the scrubbing.
_CHATTY = ("websockets", "httpcore", "httpx", "botocore", "boto3", "s3transfer", "urllib3", "hpack")


def _add_trace_id(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    # Imported lazily: tracing is optional and the API package is cheap but not free.
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog and the stdlib `logging` (uvicorn, asyncpg) to JSON lines on `stream`."""
    out = stream or sys.stdout
    numeric = _LEVELS.get(level, logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_id,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            _scrubbed(structlog.processors.JSONRenderer()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _scrubbed(structlog.processors.JSONRenderer()),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Our own request log replaces uvicorn's access log.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))
    # httpx logs every request URL at INFO (webhook receivers' keys are often in the query).
    logging.getLogger("httpx").setLevel(max(numeric, logging.WARNING))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
