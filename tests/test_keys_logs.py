"""The log file never holds a key: registered secrets and token-shaped strings are redacted,
tracebacks included; the file is private (0600)."""

from __future__ import annotations

import logging
import stat

from voicetui import logs, paths
from voicetui.keys import mask


def test_log_file_redacts_secrets_bearer_tokens_and_sk_keys() -> None:
    secret = "mistral-registered-secret-XYZW"
    path = logs.setup_logging(logging.DEBUG, paths.state_dir() / "redaction-test.log")
    try:
        logs.register_secret(secret)
        log = logging.getLogger("voicetui.test")
        log.info("using key %s for the call", secret)
        log.debug("headers: {'Authorization': 'Bearer abc.def-ghi_jkl'}")
        log.warning("openai said: Incorrect API key provided: sk-proj-AbCdEf123456789")
        log.info("api_key=plainvalue123 and apiKey: 'other-value-456'")
        try:
            raise RuntimeError(f"failed with {secret}")
        except RuntimeError:
            log.exception("boom")
        for handler in logging.getLogger().handlers:
            handler.flush()
        text = path.read_text(encoding="utf-8")
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "baseFilename", None) == str(path):
                root.removeHandler(handler)
                handler.close()
        logs._installed.clear()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for leaked in (
        secret,
        "abc.def-ghi_jkl",
        "AbCdEf123456789",
        "plainvalue123",
        "other-value-456",
    ):
        assert leaked not in text, leaked
    assert "using key *** for the call" in text
    assert "Bearer ***" in text and "sk-***" in text
    assert "Traceback" in text and "failed with ***" in text


def test_redact_is_usable_directly() -> None:
    logs.register_secret("zz-short-but-registered")
    assert logs.redact("x zz-short-but-registered y") == "x *** y"
    assert logs.redact("nothing secret here") == "nothing secret here"


def test_mask_shows_at_most_the_last_four_characters() -> None:
    assert mask("sk-1234567890abcd") == "****abcd"
    assert mask("abcdefgh") == "****efgh"  # always **** + last 4: one shape for every key
    assert mask("sk-test-0000000009") == "****0009" and len(mask("123456789")) == 8
    assert mask("abc") == "****"
    assert mask("") == "" and mask(None) == ""
