"""structlog set-up shared by the worker, the CLI and the simulators.

JSON lines by default, console rendering on a TTY. Every event (ours and the standard-library
loggers of temporalio, msal and aiohttp) passes the redaction processor: values under secret-ish
keys are masked, and any secret value this process has handled is scrubbed from every string.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

from common.codec import UnreadablePayload

REDACTED = "[REDACTED]"
# Key names (snake_case, camelCase or kebab-case) whose values are always masked.
_SECRET_SUFFIXES = (
    "secret",
    "secrettext",
    "password",
    "passwd",
    "accesstoken",
    "refreshtoken",
    "token",
    "authorization",
    "apikey",
    "clientassertion",
)
_known_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret value so it is scrubbed wherever it might turn up in a log line."""
    if len(value) >= 8:  # shorter strings would scrub innocent text
        _known_secrets.add(value)


def scrub(text: str) -> str:
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _is_secret_key(key: str) -> bool:
    return re.sub(r"[_\-]", "", key).lower().endswith(_SECRET_SUFFIXES)


def _redact_value(key: str, value: Any) -> Any:
    if _is_secret_key(key):
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(key, value)
    return event_dict


class UnreadableOncePerWorkflow(logging.Filter):
    """A workflow whose history this worker can't decrypt fails every task, and the SDK logs each one
    with a traceback: let the first through as one clear line per workflow run, drop the repeats."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        unreadable = _unreadable_cause(record.exc_info[1] if record.exc_info else None)
        if unreadable is None:
            return True
        run_id = str(record.args[0]) if isinstance(record.args, tuple) and record.args else record.getMessage()
        if run_id in self._seen:
            return False
        self._seen.add(run_id)
        record.msg, record.args, record.exc_info, record.exc_text = (
            "workflow run %s can't be processed by this worker: %s (logged once per workflow run)",
            (run_id, unreadable),
            None,
            None,
        )
        return True


def _unreadable_cause(error: BaseException | None) -> BaseException | None:
    while error is not None:
        if isinstance(error, UnreadablePayload):
            return error
        error = error.__cause__ or error.__context__
    return None


def configure_logging(
    level: str = "INFO",
    log_format: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    stream = stream or sys.stderr
    as_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # MSAL, urllib3 and the Azure SDK (every Key Vault request at INFO) are chatty, and would log
    # request details with tokens at DEBUG.
    for noisy in ("msal", "urllib3", "azure"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    handler.addFilter(UnreadableOncePerWorkflow())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
