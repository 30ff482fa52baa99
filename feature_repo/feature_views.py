"""Feature views: one per feature group, their schemas generated from the feature spec.

The fields are ``features.spec.DEFAULT_SPEC.names_for(entity)`` in vector order (all float64),
plus ``<entity>_spec_version``: the spec version that computed the stored values, so a reader
can tell values written under another spec. The version is also the ``spec_version`` tag.

``ttl`` is 0 (no expiry): event time rules here, and Feast compares ttl against the wall clock
on online reads, so a replay of old traffic would otherwise read back as nulls.

(Named ``feature_views.py``, not ``features.py``: Feast imports every file of the repo as a
top-level module, and ``features`` is the fraudstream package that holds the spec.)
"""

from datetime import timedelta

from data_sources import card_push, terminal_push
from entities import card, terminal
from feast import FeatureView, Field
from feast.types import Float64, String

from app.feast_env import version_field, view_name
from features.spec import DEFAULT_SPEC


def _view(entity, source) -> FeatureView:
    fields = [Field(name=name, dtype=Float64) for name in DEFAULT_SPEC.names_for(entity.name)]
    fields.append(Field(name=version_field(entity.name), dtype=String))
    return FeatureView(
        name=view_name(entity.name),
        entities=[entity],
        schema=fields,
        source=source,
        ttl=timedelta(0),
        online=True,
        description=f"Latest {entity.name} features, as of the entity's newest transaction "
        "(event time).",
        tags={"spec_version": DEFAULT_SPEC.version, "entity": entity.name},
    )


card_features = _view(card, card_push)
terminal_features = _view(terminal, terminal_push)
