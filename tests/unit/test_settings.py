"""Settings: documented, validated at start, secrets masked, README table up to date."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import ConfigError, Settings, env_name, load_settings
from config.settings_doc import BEGIN, END, render

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented() -> None:
    for name, info in Settings.model_fields.items():
        assert info.description and len(info.description) > 10, name


def test_readme_configuration_table_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    assert BEGIN in readme and END in readme
    assert render(readme) == readme, "run `make readme` to regenerate the configuration table"


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("FRAUDSTREAM_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("FRAUDSTREAM_CURRENCIES", "EUR, USD")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert settings.topic_partitions == 12
    assert settings.currencies == ["EUR", "USD"]
    assert env_name("redis_url") == "REDIS_URL"


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "fraud")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@cache:6379/0")
    settings = load_settings()
    assert "hunter2" not in repr(settings) and "s3cret" not in repr(settings)
    assert settings.kafka_sasl_password.get_secret_value() == "hunter2"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FRAUDSTREAM_TOPIC_PARTITIONS": "zero"}, "FRAUDSTREAM_TOPIC_PARTITIONS"),
        ({"FRAUDSTREAM_STORE": "redis://"}, "FRAUDSTREAM_STORE: must be rocksdb:// or memory://"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CAFILE=/nonexistent/ca.pem"),
        ({"FRAUDSTREAM_CURRENCIES": "euro"}, "FRAUDSTREAM_CURRENCIES"),
        ({"FRAUDSTREAM_MAX_AMOUNT": "-1"}, "FRAUDSTREAM_MAX_AMOUNT"),
    ],
)
def test_bad_configuration_names_the_variable(monkeypatch, env, message) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value)
    assert info.value.code == str(info.value)  # printed by the interpreter on exit


def test_password_never_in_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)
