"""Our webhook signatures, checked by the Standard Webhooks reference library (PyPI
`standardwebhooks`), and the retry arithmetic."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from cariosan.config import WEBHOOK_SCHEDULE, ConfigError, load_settings
from cariosan.webhooks import signing
from cariosan.webhooks.worker import next_delay, retry_after_seconds

BODY = json.dumps({"type": "message.new", "seq": 42, "text": "héllo"}).encode()


def test_secret_format() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert signing.new_secret() != secret


def test_reference_library_verifies_our_signature() -> None:
    secret = signing.new_secret()
    headers = signing.headers([secret], "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", int(time.time()), BODY)
    assert headers["content-type"] == "application/json"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_reference_library_rejects_tampering_and_other_secrets() -> None:
    secret = signing.new_secret()
    now = int(time.time())
    headers = signing.headers([secret], "msg_1", now, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"42", b"43"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_2"})
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-timestamp": str(now + 1)})


def test_known_answer_from_the_specification_example() -> None:
    # The example of the Standard Webhooks specification (and its reference test suite).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


def test_rotation_signs_with_both_secrets() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    headers = signing.headers([new, old], "msg_rot", int(time.time()), BODY)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)


def test_retry_schedule_and_jitter() -> None:
    assert WEBHOOK_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    for attempts in range(1, len(WEBHOOK_SCHEDULE)):
        delays = {next_delay(WEBHOOK_SCHEDULE, attempts, None) for _ in range(20)}
        base = WEBHOOK_SCHEDULE[attempts]
        assert all(d is not None and 0.9 * base <= d <= 1.1 * base for d in delays)
        assert len(delays) > 1, "retries must be jittered"
    assert next_delay(WEBHOOK_SCHEDULE, len(WEBHOOK_SCHEDULE), None) is None
    # Retry-After asks for at least that long, never less than the schedule.
    assert next_delay(WEBHOOK_SCHEDULE, 1, 120.0) == 120.0
    delay = next_delay(WEBHOOK_SCHEDULE, 2, 10.0)
    assert delay is not None and delay >= 270


def test_retry_after_parsing() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("30", now) == 30
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    later = (now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_seconds(later, now) == 90


def test_webhook_settings() -> None:
    settings = load_settings(
        {"CARIOS_WEBHOOK_ALLOW_PRIVATE": "true", "CARIOS_WEBHOOK_SCHEDULE": "0, 0.5,2"},
        dotenv=None,
    )
    assert settings.webhook_allow_private is True
    assert settings.webhook_schedule == (0.0, 0.5, 2.0)
    defaults = load_settings({}, dotenv=None)
    assert defaults.webhook_allow_private is False
    assert defaults.webhook_schedule == WEBHOOK_SCHEDULE
    with pytest.raises(ConfigError, match="CARIOS_WEBHOOK_SCHEDULE"):
        load_settings({"CARIOS_WEBHOOK_SCHEDULE": "0,soon"}, dotenv=None)
    with pytest.raises(ConfigError, match="CARIOS_WEBHOOK_ALLOW_PRIVATE"):
        load_settings({"CARIOS_WEBHOOK_ALLOW_PRIVATE": "maybe"}, dotenv=None)
