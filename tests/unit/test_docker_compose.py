"""docker-compose.yml cannot run here (no Docker engine): check it parses and matches settings."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from config.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
KNOWN = {env_name(field) for field in Settings.model_fields}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_parses_with_the_expected_services() -> None:
    services = _compose()["services"]
    assert {"kafka", "redis", "worker"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_worker_environment_names_are_settings() -> None:
    env = _compose()["services"]["worker"]["environment"]
    unknown = set(env) - KNOWN
    assert not unknown, f"not settings of config/settings.py: {unknown}"


def test_ports_bound_to_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_redis_password_comes_from_the_environment() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${REDIS_PASSWORD" in text
    assert not re.search(r"requirepass\", \"[^$]", text)


def test_env_example_names_are_settings_or_compose_variables() -> None:
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert names - KNOWN <= {"REDIS_PASSWORD"}
