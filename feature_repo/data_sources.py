"""Data sources: one push source per feature view, each backed by a parquet batch source.

The streaming worker's materialiser (:mod:`app.materialiser`) pushes micro-batches to the push
sources; the offline copy goes to the batch source's parquet folder under ``$FEAST_OFFLINE_PATH``
(``<data_dir>/feast/offline/<view>/``: never inside this repo). ``fraudstream features env``
prints the variables. Importing this file (as ``feast apply`` does) creates the registry's
folder and the offline folders, each with an empty parquet file that carries its schema.
"""

import os
from pathlib import Path

from feast import FileSource, PushSource

from app.feast_env import (
    FEAST_VARS,
    OFFLINE_PATH_VAR,
    REGISTRY_PATH_VAR,
    TIMESTAMP_FIELD,
    ensure_offline_dirs,
    offline_dir,
    push_source_name,
    view_name,
)

_missing = [name for name in FEAST_VARS if not os.environ.get(name)]
if _missing:
    raise RuntimeError(
        f"{', '.join(_missing)} not set: run `eval \"$(fraudstream features env)\"` before "
        "`feast apply`, or use `fraudstream features apply`"
    )
_offline = os.environ[OFFLINE_PATH_VAR]
# `feast apply` creates neither the registry's folder nor the offline datasets.
Path(os.environ[REGISTRY_PATH_VAR]).parent.mkdir(parents=True, exist_ok=True)
ensure_offline_dirs(_offline)


def _push_source(entity: str) -> PushSource:
    batch = FileSource(
        name=f"{view_name(entity)}_offline",
        path=str(offline_dir(_offline, entity)),
        timestamp_field=TIMESTAMP_FIELD,
        description=f"Offline copy of every {entity} micro-batch the materialiser pushed.",
    )
    return PushSource(
        name=push_source_name(entity),
        batch_source=batch,
        description=f"Latest {entity} features, pushed in micro-batches by the stream.",
    )


card_push = _push_source("card")
terminal_push = _push_source("terminal")
