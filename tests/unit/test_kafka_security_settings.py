"""Kafka security settings: secrets from the environment or ``*_FILE``, never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from connectors.kafka.settings import KafkaSettings, kafka_env
from connectors.settings import load_settings

SECRET = "s3cret-value-42"  # noqa: S105 - a known value the tests look for


def test_a_password_file_is_read_once_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text(SECRET + "\n")
    monkeypatch.setenv("TRADEFLOW_KAFKA__SASL_USERNAME", "job-strategy")
    monkeypatch.setenv("TRADEFLOW_KAFKA__SASL_PASSWORD_FILE", str(secret_file))
    kafka = load_settings().kafka
    assert kafka.sasl_password == SecretStr(SECRET)
    assert kafka.effective_protocol == "SASL_SSL"
    assert kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert SECRET not in repr(kafka) + str(kafka)
    env = kafka_env(kafka)
    assert SECRET not in json.dumps(env)  # the child gets the file, not the secret
    assert json.loads(env["TRADEFLOW_KAFKA"])["sasl_password_file"] == str(secret_file)


def test_a_direct_password_goes_to_a_child_as_its_own_variable_not_in_the_json() -> None:
    kafka = KafkaSettings(sasl_username="u", sasl_password=SecretStr(SECRET))
    env = kafka_env(kafka)
    assert SECRET not in env["TRADEFLOW_KAFKA"]
    assert env["TRADEFLOW_KAFKA__SASL_PASSWORD"] == SECRET


def test_bad_secret_settings_fail_without_the_secret_in_the_message(tmp_path: Path) -> None:
    other = tmp_path / "pw"
    other.write_text("another-value")
    with pytest.raises(ValidationError) as info:
        KafkaSettings(sasl_username="u", sasl_password=SecretStr(SECRET), sasl_password_file=other)
    assert "different values" in str(info.value)
    assert SECRET not in str(info.value)
    assert "another-value" not in str(info.value)
    with pytest.raises(ValidationError, match="cannot read secret file"):
        KafkaSettings(sasl_username="u", sasl_password_file=tmp_path / "missing")
    with pytest.raises(ValidationError, match="neither sasl_password"):
        KafkaSettings(sasl_username="u")


def test_tls_verifies_the_broker_certificate_and_its_host_name(tmp_path: Path) -> None:
    from connectors.kafka.config import security_config

    conf = security_config(KafkaSettings(ssl_ca_location=tmp_path / "ca.pem"))
    assert conf["security.protocol"] == "ssl"
    assert conf["enable.ssl.certificate.verification"] is True
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    assert security_config(KafkaSettings())["security.protocol"] == "plaintext"
