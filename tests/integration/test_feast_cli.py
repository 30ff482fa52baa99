"""``fraudstream features`` against a real Redis, and plain ``feast apply`` from feature_repo/."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli.features import command
from app.feast_env import FEAST_VARS, REDIS_VAR, REPO_DIR
from config.settings import get_settings

pytestmark = pytest.mark.integration


def _repo_files() -> list[str]:
    return sorted(str(p.relative_to(REPO_DIR)) for p in REPO_DIR.rglob("*"))


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str) -> Iterator[Path]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FRAUDSTREAM_DATA_DIR", str(tmp_path / "data"))
    for name in FEAST_VARS:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def _exports(output: str) -> dict[str, str]:
    out = {}
    for line in output.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            out[name] = shlex.split(value)[0]
    return out


def test_apply_then_get(configured: Path) -> None:
    runner = CliRunner()
    before = _repo_files()
    result = runner.invoke(command, ["apply"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (configured / "feast" / "registry.db").is_file()
    assert _repo_files() == before  # nothing written into the repo

    from app.feast_env import load_store
    from app.feast_sink import FeastSink
    from app.materialiser import Materialiser
    from features.spec import DEFAULT_SPEC

    store = load_store(os.environ["REDIS_URL"], configured)
    view = store.get_feature_view("card_features")
    assert Path(view.batch_source.path).is_relative_to(configured)  # this data folder's

    card = f"C-{uuid.uuid4().hex[:8]}"
    values = {name: float(i) for i, name in enumerate(DEFAULT_SPEC.names_for("card"))}
    m = Materialiser(FeastSink(store, None), metrics=False)
    m.update("card", card, values, event_ts_ms=1_700_000_000_000)

    import asyncio

    assert asyncio.run(m.flush())
    result = runner.invoke(command, ["get", "--card", card, "--terminal", "nobody"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["card"] == {"card_id": card, **values, "card_spec_version": DEFAULT_SPEC.version}
    assert got["terminal"]["terminal_id"] == "nobody"
    assert got["terminal"]["terminal_risk_1d_delay7d"] is None
    assert runner.invoke(command, ["get"]).exit_code == 2


def test_env_prints_the_variables(configured: Path) -> None:
    result = CliRunner().invoke(command, ["env"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    env = _exports(result.output)
    assert set(env) == set(FEAST_VARS)
    assert env["FEAST_REGISTRY_PATH"] == str((configured / "feast" / "registry.db").absolute())
    host_port = os.environ["REDIS_URL"].split("//")[1].split("/")[0].split("@")[-1]
    assert env[REDIS_VAR].startswith(host_port + ",db=")


@pytest.mark.slow
def test_plain_feast_apply_from_the_repo_with_the_printed_env(configured: Path) -> None:
    """The documented path: eval "$(fraudstream features env)"; cd feature_repo; feast apply."""
    result = CliRunner().invoke(command, ["env"], catch_exceptions=False)
    env = {**os.environ, **_exports(result.output)}
    before = _repo_files()
    feast = Path(sys.executable).with_name("feast")
    proc = subprocess.run([str(feast), "apply"], cwd=REPO_DIR, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "card_features" in proc.stdout and "terminal_features" in proc.stdout
    assert (configured / "feast" / "registry.db").is_file()
    assert _repo_files() == before
