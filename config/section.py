"""What every group of settings shares: frozen fields, each documented, each with one variable.

A :class:`Section` holds the settings of one concern (the broker, the topics, LightGBM, the
promotion gates ...). Each field is set by exactly one environment variable: its
``validation_alias`` when it has one (``KAFKA_BOOTSTRAP_SERVERS``), else the section's
``env_prefix`` + the field name in upper case (``FRAUDSTREAM_LGBM_`` + ``NUM_LEAVES``).

Sections do not read the environment themselves: :class:`config.settings.Settings` does, with
one flat field per variable, and builds the sections from those fields. A section made in code
(``LGBMParams(num_boost_round=50)``) takes the defaults declared here and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

#: Prefix of the project's own variables (the endpoints keep the names every tool knows).
ENV_PREFIX = "FRAUDSTREAM_"


class Section(BaseModel):
    """A frozen group of settings; see the module docstring for how fields map to variables."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    #: Prefix of the variables of fields without a ``validation_alias``.
    env_prefix: ClassVar[str] = ENV_PREFIX
    #: Extra constraints that only the environment variable gets: values that code (tests,
    #: tools) may pass on purpose but an operator should not set, by field name.
    env_only: ClassVar[Mapping[str, tuple[Any, ...]]] = {}

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets ``field``.

        >>> class Demo(Section):
        ...     env_prefix = "FRAUDSTREAM_DEMO_"
        ...     size: int = 1
        >>> Demo.env_name("size")
        'FRAUDSTREAM_DEMO_SIZE'
        """
        alias = cls.model_fields[field].validation_alias
        return alias if isinstance(alias, str) else f"{cls.env_prefix}{field.upper()}"


def flat_name(env: str) -> str:
    """The name of the flat :class:`config.settings.Settings` field for variable ``env``.

    >>> flat_name("FRAUDSTREAM_LGBM_NUM_LEAVES"), flat_name("KAFKA_BOOTSTRAP_SERVERS")
    ('lgbm_num_leaves', 'kafka_bootstrap_servers')
    """
    return env.removeprefix(ENV_PREFIX).lower()


def split_list(value: object) -> object:
    """A list from the environment: JSON (``["a", "b"]``) or comma-separated (``a, b``).

    >>> split_list('["EUR", "USD"]'), split_list("EUR, USD,"), split_list(["EUR"])
    (['EUR', 'USD'], ['EUR', 'USD'], ['EUR'])
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value
