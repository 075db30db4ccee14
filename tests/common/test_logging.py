"""Logging: JSON lines, secret-ish keys masked, every registered secret value scrubbed from every string,
for structlog events and standard-library records alike."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from common import logging as common_logging
from common.logging import REDACTED, configure_logging, register_secret, scrub


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put root handlers, levels, structlog and the
    registry of known secrets back as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("msal", "urllib3")}
    structlog_config = structlog.get_config()
    known = set(common_logging._known_secrets)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, noisy_level in noisy.items():
            logging.getLogger(name).setLevel(noisy_level)
        structlog.configure(**structlog_config)
        common_logging._known_secrets.clear()
        common_logging._known_secrets.update(known)


@pytest.fixture
def stream() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    return stream


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def new_secret() -> str:
    return f"zq-secret-{uuid.uuid4().hex}"


def test_json_lines_with_level_logger_and_timestamp(stream: io.StringIO) -> None:
    structlog.get_logger("yec.test").info("integration connected", integration_id="acme-hq", days=[30, 14])

    (record,) = records(stream)
    assert record["event"] == "integration connected"
    assert record["integration_id"] == "acme-hq"
    assert record["days"] == [30, 14]
    assert record["level"] == "info"
    assert record["logger"] == "yec.test"
    assert record["timestamp"].endswith("Z")


def test_auto_format_is_json_when_not_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "auto", stream)

    structlog.get_logger("yec.test").info("hello", n=1)

    assert records(stream)[0]["n"] == 1


def test_level_filters_and_quiets_noisy_libraries() -> None:
    stream = io.StringIO()
    configure_logging("warning", "json", stream)

    structlog.get_logger("yec.test").info("not shown")
    logging.getLogger("yec.test").warning("shown")

    assert [r["event"] for r in records(stream)] == ["shown"]
    assert logging.getLogger("msal").level == logging.WARNING
    assert logging.getLogger("urllib3").level == logging.WARNING


@pytest.mark.parametrize(
    "key",
    [
        "client_secret",
        "password",
        "access_token",
        "refresh_token",
        "api_key",
        "apikey",
        "token",
        "secret",
        "secretText",
        "authorization",
        "client_assertion",
        "signing_secret",
        "smtp_password",
    ],
)
def test_values_under_secret_keys_are_masked(stream: io.StringIO, key: str) -> None:
    value = f"value-under-{key}-0123"  # not registered: masked because of its key alone

    structlog.get_logger("yec.test").info("calling", **{key: value, "integration_id": "acme-hq"})

    (record,) = records(stream)
    assert record[key] == REDACTED
    assert record["integration_id"] == "acme-hq"
    assert value not in stream.getvalue()


def test_secret_keys_are_masked_in_nested_values_and_bound_context(stream: io.StringIO) -> None:
    log = structlog.get_logger("yec.test")

    with structlog.contextvars.bound_contextvars(access_token="bound-token-value-0123"):
        log.info("request", body={"client_id": "app-1", "client_secret": "nested-secret-0123", "scopes": ["a"]})

    (record,) = records(stream)
    assert record["access_token"] == REDACTED
    assert record["body"] == {"client_id": "app-1", "client_secret": REDACTED, "scopes": ["a"]}
    assert "bound-token-value-0123" not in stream.getvalue()
    assert "nested-secret-0123" not in stream.getvalue()


def test_registered_secret_is_scrubbed_from_every_string(stream: io.StringIO) -> None:
    secret = new_secret()
    register_secret(secret)
    log = structlog.get_logger("yec.test")

    log.info(f"token endpoint said {secret}", detail=f"prefix{secret}suffix")
    log.info("nested", data={"outer": {"inner": [f"a {secret}", ("t", secret)]}, "list": [secret, 3]})
    logging.getLogger("x").info("stdlib says %s twice: %s", secret, secret)
    logging.getLogger("temporalio.activity").warning({"payload": secret})

    output = stream.getvalue()
    assert secret not in output
    first, nested, stdlib, stdlib_dict = records(stream)
    assert first["event"] == f"token endpoint said {REDACTED}"
    assert first["detail"] == f"prefix{REDACTED}suffix"
    assert nested["data"] == {"outer": {"inner": [f"a {REDACTED}", ["t", REDACTED]]}, "list": [REDACTED, 3]}
    assert stdlib["event"] == f"stdlib says {REDACTED} twice: {REDACTED}"
    assert stdlib["logger"] == "x"
    assert REDACTED in stdlib_dict["event"]


def test_registered_secret_is_scrubbed_from_tracebacks(stream: io.StringIO) -> None:
    secret = new_secret()
    register_secret(secret)

    try:
        raise RuntimeError(f"AADSTS7000215: invalid client secret {secret}")
    except RuntimeError:
        logging.getLogger("msal.application").error("token request failed", exc_info=True)
        structlog.get_logger("yec.test").exception("token request failed")

    assert secret not in stream.getvalue()
    stdlib, ours = records(stream)
    assert "AADSTS7000215" in stdlib["exception"] and REDACTED in stdlib["exception"]
    assert "AADSTS7000215" in ours["exception"] and REDACTED in ours["exception"]


def test_console_format_is_redacted_too() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "console", stream)
    secret = new_secret()
    register_secret(secret)

    structlog.get_logger("yec.test").info(f"reveal {secret}", password="pw-value-0123")

    output = stream.getvalue()
    assert secret not in output and "pw-value-0123" not in output
    assert REDACTED in output
    assert not output.startswith("{")


def test_short_strings_are_not_registered(stream: io.StringIO) -> None:
    seven, eight = "zq" + uuid.uuid4().hex[:5], "zq" + uuid.uuid4().hex[:6]
    register_secret(seven)
    register_secret(eight)

    structlog.get_logger("yec.test").info(f"ids {seven} {eight}")

    assert records(stream)[0]["event"] == f"ids {seven} {REDACTED}"
    assert scrub(seven) == seven
    assert scrub(eight) == REDACTED
