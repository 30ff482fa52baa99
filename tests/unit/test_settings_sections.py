"""The settings' sections: one declaration per setting, read from its variable, typed in code."""

from __future__ import annotations

import pytest

from config.gates import PromotionGates
from config.section import flat_name
from config.settings import SECTIONS, ConfigError, Settings, load_settings
from config.training import LGBMParams


def test_every_variable_belongs_to_one_section_or_to_settings_itself() -> None:
    owners: dict[str, str] = {}
    for attr, section in SECTIONS.items():
        for name in section.model_fields:
            flat = flat_name(section.env_name(name))
            assert flat not in owners, (flat, owners.get(flat), attr)
            owners[flat] = attr
    assert set(Settings.model_fields) - set(owners) == {"data_dir"}


def test_each_section_attribute_is_its_class_with_the_flat_values() -> None:
    settings = load_settings(lgbm_num_leaves=31, topic_dlq="my-dlq", kafka_sasl_username="u")
    for attr, section in SECTIONS.items():
        value = getattr(settings, attr)
        assert type(value) is section, attr
        for name in section.model_fields:
            assert getattr(value, name) == getattr(settings, flat_name(section.env_name(name)))
    assert settings.lgbm.num_leaves == 31 and settings.topics.dlq == "my-dlq"
    assert settings.broker.sasl_username == "u"


def test_variables_reach_the_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDSTREAM_LGBM_NUM_LEAVES", "31")
    monkeypatch.setenv("FRAUDSTREAM_GATE_MIN_AUC_ROC", "0.9")
    monkeypatch.setenv("FRAUDSTREAM_CONSUMER_FETCH_MAX_WAIT_MS", "7")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    settings = load_settings()
    assert settings.lgbm.num_leaves == 31 and settings.gates.min_auc_roc == 0.9
    assert settings.broker.fetch_max_wait_ms == 7
    assert settings.registry.tracking_uri == settings.tracking_uri == "sqlite:///x.db"


def test_one_default_per_setting_and_sections_made_in_code_ignore_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert LGBMParams() == load_settings().lgbm
    assert PromotionGates() == load_settings().gates
    assert (LGBMParams().num_boost_round, LGBMParams().learning_rate, LGBMParams().num_leaves,
            LGBMParams().imbalance) == (2000, 0.02, 7, "none")
    monkeypatch.setenv("FRAUDSTREAM_LGBM_NUM_LEAVES", "31")
    assert LGBMParams().num_leaves == 7 and load_settings().lgbm.num_leaves == 31


def test_a_check_only_the_variable_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PromotionGates(min_improvement=-1.0).min_improvement == -1.0  # tools may
    monkeypatch.setenv("FRAUDSTREAM_GATE_MIN_IMPROVEMENT", "-1")
    with pytest.raises(ConfigError, match="FRAUDSTREAM_GATE_MIN_IMPROVEMENT"):
        load_settings()


def test_sections_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.lgbm.num_leaves = 3  # type: ignore[misc]
