"""The one settings object of every fraudstream process.

Every setting is read from an environment variable (or a ``.env`` file in the working
directory). Project settings use the ``FRAUDSTREAM_`` prefix; the endpoints that every tool of
the field knows keep their usual names: ``KAFKA_BOOTSTRAP_SERVERS``, ``KAFKA_*`` security
settings, ``REDIS_URL`` and ``MLFLOW_TRACKING_URI``. Secrets are :class:`pydantic.SecretStr`,
masked in ``repr`` and in logs. The README's configuration table is generated from
:class:`Settings` (``python -m config.settings_doc``) and a test fails when it is stale.

The settings are grouped by concern into sections (:class:`config.section.Section`), each
declared once with its fields, defaults, checks and descriptions:

``broker`` (``KAFKA_*``, consumer fetch wait, group session), ``worker`` (app id, table store,
web server, micro-batches), ``topics``, ``validation``, ``features`` (lateness, state sizes),
``pipeline`` (the pipeline agent: scoring fused or separate, state-log flushes, queues),
``feast`` (``REDIS_URL``, materialisation), ``scoring``, ``registry`` (``MLFLOW_TRACKING_URI``,
model name), ``training`` (windows, alert budget), ``lgbm`` (:class:`config.training.LGBMParams`),
``gates`` (:class:`config.gates.PromotionGates`), ``drift`` and ``retrain``
(:data:`SECTIONS` maps each attribute to its class).

:class:`Settings` is the environment's view of them: one flat field per variable (named after
it: ``FRAUDSTREAM_LGBM_NUM_LEAVES`` is ``lgbm_num_leaves``), generated from the sections, so
that ``.env`` files, :func:`env_name`, :func:`settings_for_env`, the README table and the error
messages all speak in variables. Code reads the typed sections: ``settings.lgbm.num_leaves``.

Bad configuration stops the process at start: :func:`get_settings` raises
:class:`ConfigError` whose message names each environment variable and what to fix.
"""

from __future__ import annotations

import functools
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import Field, ValidationError, create_model, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from config.gates import PromotionGates
from config.kafka import BrokerSettings, TopicSettings, WorkerSettings
from config.monitoring import DriftSettings, RetrainSettings
from config.section import ENV_PREFIX, Section, flat_name
from config.stream import (
    FeastSettings,
    FeatureSettings,
    PipelineSettings,
    ScoringSettings,
    ValidationSettings,
)
from config.training import LGBMParams, RegistrySettings, TrainingSettings

S = TypeVar("S", bound=Section)

#: Attribute of :class:`Settings` -> its section, in the order of the README table.
SECTIONS: dict[str, type[Section]] = {
    "broker": BrokerSettings,
    "worker": WorkerSettings,
    "topics": TopicSettings,
    "validation": ValidationSettings,
    "features": FeatureSettings,
    "pipeline": PipelineSettings,
    "feast": FeastSettings,
    "scoring": ScoringSettings,
    "registry": RegistrySettings,
    "training": TrainingSettings,
    "lgbm": LGBMParams,
    "gates": PromotionGates,
    "drift": DriftSettings,
    "retrain": RetrainSettings,
}


class ConfigError(SystemExit):
    """Configuration that cannot work; the message says which variable and how to fix it.

    A ``SystemExit`` whose code is the message: an uncaught one prints it on standard error
    and exits with status 1, so a CLI or a worker stops with the message, not a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class _Environment(BaseSettings):
    """The variables that belong to no section, and how variables are read."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    data_dir: Path = Field(
        Path(".fraudstream"),
        description="Folder for local state: embedded stack endpoints, Faust tables, MLflow "
        "sqlite registry and artifacts, feature store files, benchmark results.",
    )


def _flat_fields() -> dict[str, Any]:
    """One field per variable of every section: the section's type, checks, default and
    description, under the variable's name (with the variable as alias where it has no
    ``FRAUDSTREAM_`` prefix)."""
    fields: dict[str, Any] = {}
    for section in SECTIONS.values():
        for name, info in section.model_fields.items():
            env = section.env_name(name)
            metadata = (*info.metadata, *section.env_only.get(name, ()))
            annotation = Annotated[(info.annotation, *metadata)] if metadata else info.annotation
            kwargs: dict[str, Any] = {"description": info.description}
            if info.default_factory is not None:
                kwargs["default_factory"] = info.default_factory
            else:
                kwargs["default"] = info.default
            if not env.startswith(ENV_PREFIX):
                kwargs["validation_alias"] = env
            flat = flat_name(env)
            if flat in fields or flat in _Environment.model_fields:
                raise TypeError(f"{section.__name__}.{name}: {env} is set by another field")
            fields[flat] = (annotation, Field(**kwargs))
    return fields


if TYPE_CHECKING:
    _Flat = _Environment
else:
    _Flat = create_model("_Flat", __base__=_Environment, __module__=__name__, **_flat_fields())


class Settings(_Flat):
    """fraudstream settings (environment variables, defaults for a laptop).

    The fields are flat, one per variable (see the module docstring); the attributes named
    in :data:`SECTIONS` give them grouped and typed, built once per instance.
    """

    @model_validator(mode="after")
    def _check_sections(self) -> Settings:
        """Run the checks that span several fields of a section (e.g. SASL needs a user)."""
        problems = []
        for section in SECTIONS.values():
            try:
                self._section(section)
            except ValidationError as exc:
                problems += [err["msg"].removeprefix("Value error, ") for err in exc.errors()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _section(self, section: type[S]) -> S:
        values = {name: getattr(self, flat_name(section.env_name(name)))
                  for name in section.model_fields}
        return section.model_validate(values)

    # -- the sections ------------------------------------------------------------------------
    @cached_property
    def broker(self) -> BrokerSettings:
        return self._section(BrokerSettings)

    @cached_property
    def worker(self) -> WorkerSettings:
        return self._section(WorkerSettings)

    @cached_property
    def topics(self) -> TopicSettings:
        return self._section(TopicSettings)

    @cached_property
    def validation(self) -> ValidationSettings:
        return self._section(ValidationSettings)

    @cached_property
    def features(self) -> FeatureSettings:
        return self._section(FeatureSettings)

    @cached_property
    def pipeline(self) -> PipelineSettings:
        return self._section(PipelineSettings)

    @cached_property
    def feast(self) -> FeastSettings:
        return self._section(FeastSettings)

    @cached_property
    def scoring(self) -> ScoringSettings:
        return self._section(ScoringSettings)

    @cached_property
    def registry(self) -> RegistrySettings:
        return self._section(RegistrySettings)

    @cached_property
    def training(self) -> TrainingSettings:
        return self._section(TrainingSettings)

    @cached_property
    def lgbm(self) -> LGBMParams:
        return self._section(LGBMParams)

    @cached_property
    def gates(self) -> PromotionGates:
        return self._section(PromotionGates)

    @cached_property
    def drift(self) -> DriftSettings:
        return self._section(DriftSettings)

    @cached_property
    def retrain(self) -> RetrainSettings:
        return self._section(RetrainSettings)

    # -- derived paths -----------------------------------------------------------------------
    @property
    def stack_file(self) -> Path:
        """Where `fraudstream stack up` writes the endpoints it started."""
        return self.data_dir / "stack.json"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force (sqlite in the data folder by default)."""
        if self.registry.tracking_uri:
            return self.registry.tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        """Where MLflow artifacts (runs, ONNX models) go when this project creates them."""
        return self.registry.artifact_root or self.data_dir / "mlartifacts"

    @property
    def training_cache_dir(self) -> Path:
        """Cached feature frames of training sets (parquet)."""
        return self.data_dir / "training" / "cache"


def env_name(field: str) -> str:
    """The environment variable that sets ``field``.

    >>> env_name("kafka_bootstrap_servers"), env_name("topic_partitions")
    ('KAFKA_BOOTSTRAP_SERVERS', 'FRAUDSTREAM_TOPIC_PARTITIONS')
    """
    info = Settings.model_fields[field]
    alias = info.validation_alias
    return alias if isinstance(alias, str) else f"{ENV_PREFIX}{field.upper()}"


def settings_for_env(env: dict[str, str]) -> Settings:
    """Settings as a process with environment ``env`` would read them."""
    overrides = {f: env[env_name(f)] for f in Settings.model_fields if env_name(f) in env}
    return load_settings(**overrides)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; :class:`ConfigError` with a readable message.

    >>> load_settings(topic_partitions=0)
    Traceback (most recent call last):
    ...
    config.settings.ConfigError: invalid configuration:
      FRAUDSTREAM_TOPIC_PARTITIONS: Input should be greater than or equal to 1 (got 0)
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = ["invalid configuration:"]
        for err in exc.errors():
            loc = [str(part) for part in err["loc"]]
            field = loc[0] if loc else ""
            known = field.lower() in Settings.model_fields
            where = env_name(field.lower()) if known else "configuration"
            got = "" if err["type"] == "missing" or not known else f" (got {err['input']!r})"
            if "password" in field.lower() or "redis_url" in field.lower():
                got = ""
            lines.append(f"  {where}: {err['msg'].removeprefix('Value error, ')}{got}")
        raise ConfigError("\n".join(lines)) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
