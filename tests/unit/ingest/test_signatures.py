"""Who may call: HMAC over the raw body, Telegram's secret token, Meta's verify token."""

import json

from services.ingest.signatures import check_hmac, check_secret_token, check_verify_token, sign

BODY = b'{"object":"page","entry":[]}'


def test_a_signature_over_the_raw_body_passes():
    assert check_hmac("s3cret", BODY, sign("s3cret", BODY)) is None


def test_hex_case_and_surrounding_space_do_not_matter():
    signature = sign("s3cret", BODY)
    assert check_hmac("s3cret", BODY, "sha256=" + signature.removeprefix("sha256=").upper()) is None
    assert check_hmac("s3cret", BODY, f"  {signature} ") is None


def test_missing_signature_is_unsigned_and_a_wrong_one_is_bad():
    assert check_hmac("s3cret", BODY, None) == "unsigned"
    assert check_hmac("s3cret", BODY, "") == "unsigned"
    assert check_hmac("s3cret", BODY, sign("other", BODY)) == "bad_signature"
    assert check_hmac("s3cret", BODY, sign("s3cret", BODY).removeprefix("sha256=")) == "bad_signature"
    assert check_hmac("s3cret", BODY, "sha1=" + sign("s3cret", BODY)[7:]) == "bad_signature"


def test_the_signature_covers_the_exact_bytes_not_the_json_value():
    reserialised = json.dumps(json.loads(BODY)).encode()  # same JSON, other bytes (spaces)
    assert reserialised != BODY
    assert check_hmac("s3cret", reserialised, sign("s3cret", BODY)) == "bad_signature"
    assert check_hmac("s3cret", BODY + b" ", sign("s3cret", BODY)) == "bad_signature"


def test_non_ascii_headers_are_wrong_not_errors():
    assert check_hmac("s3cret", BODY, "sha256=é" + "0" * 63) == "bad_signature"
    assert check_secret_token("token", "tökén") == "bad_signature"
    assert check_verify_token("verify", "subscribe", "vérify") is False
    assert check_secret_token("token", "\ud800") == "bad_signature"  # a lone surrogate


def test_an_empty_secret_accepts_nothing():
    assert check_hmac("", BODY, sign("", BODY)) == "not_configured"
    assert check_secret_token("", "") == "not_configured"
    assert check_secret_token("", "anything") == "not_configured"
    assert check_verify_token("", "subscribe", "") is False


def test_telegram_secret_token():
    assert check_secret_token("tg-secret", "tg-secret") is None
    assert check_secret_token("tg-secret", None) == "unsigned"
    assert check_secret_token("tg-secret", "tg-secreT") == "bad_signature"


def test_meta_verify_token_needs_subscribe_mode():
    assert check_verify_token("verify", "subscribe", "verify") is True
    assert check_verify_token("verify", "unsubscribe", "verify") is False
    assert check_verify_token("verify", "subscribe", None) is False
    assert check_verify_token("verify", "subscribe", "verif") is False
