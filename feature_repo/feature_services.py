"""Feature services: the features the fraud model reads, as one named set.

The model's card and terminal inputs in spec order (the transaction's own features, such as
``amount``, come with the request). Read with
``store.get_online_features(features=store.get_feature_service("fraud_model"), ...)``.
"""

from feast import FeatureService
from feature_views import card_features, terminal_features

from app.feast_env import FEATURE_SERVICE
from features.spec import DEFAULT_SPEC

fraud_model = FeatureService(
    name=FEATURE_SERVICE,
    features=[
        card_features[DEFAULT_SPEC.names_for("card")],
        terminal_features[DEFAULT_SPEC.names_for("terminal")],
    ],
    description="Card and terminal features of the fraud model (feature spec "
    f"{DEFAULT_SPEC.version}).",
    tags={"spec_version": DEFAULT_SPEC.version},
)
