"""MLflow 3 model registry for the ONNX fraud model: candidates, champion/challenger, rollback.

Works on a bare ``sqlite:///`` tracking URI (no server; needs alembic and
sqlalchemy). One registered model (default ``fraud-lgbm``) whose versions are
MLflow 3 *logged models* holding ``model.onnx`` (the exact exported bytes), with
the aliases ``champion`` and ``challenger``.

Per version, the model-version tags hold what a scorer needs without opening the
file: ``sha256`` (of ``model.onnx``), ``feature_names`` (JSON list, ordered),
``feature_spec_version``, ``onnx_model_version``, ``test_data_id`` and the test
metrics as ``metric.<name>``. The training run holds the same metrics, the
hyperparameters as params, ``onnx_sha256`` as a param and the report folder as
artifacts under ``report/``.

Champion changes go through :meth:`ModelRegistry.promote` and
:meth:`ModelRegistry.rollback` only; both append to the registered model's
``champion_history`` tag (JSON list), from which the stack of past champions is
replayed. Each of register / promote / rollback returns a ``model-updates``
event dict for the caller to publish (:mod:`models.events`); this module does not
talk to Kafka.

Retraining's idempotency keys live here too, as registered-model tags
``retrain.<key>`` holding the outcome (:meth:`ModelRegistry.handled_retrain`,
:meth:`ModelRegistry.mark_retrain_handled`), so every worker on the registry sees them.

Every process opens the registry the same way, from the settings: :func:`open_registry`.

Importing this module sets ``MLFLOW_DISABLE_TELEMETRY=true`` unless the variable
is already set.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import onnx

# No usage telemetry from a process that handles card data, unless explicitly enabled.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow import MlflowClient  # noqa: E402  (after the telemetry default)
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from config.gates import PromotionGates, PromotionRefused  # noqa: E402
from config.settings import Settings  # noqa: E402
from contracts.records import ModelUpdate  # noqa: E402
from models.artifact import ExportedModel  # noqa: E402
from models.serving import OnnxScorer, load_onnx_model, sha256_hex  # noqa: E402

DEFAULT_TRACKING_URI = "sqlite:///.fraudstream/mlflow.db"
DEFAULT_ARTIFACT_ROOT = ".fraudstream/mlartifacts"
DEFAULT_MODEL_NAME = "fraud-lgbm"
DEFAULT_EXPERIMENT = "fraudstream"
CHAMPION, CHALLENGER = "champion", "challenger"
ONNX_FILE = "model.onnx"
HISTORY_TAG = "champion_history"
HISTORY_KEEP = 200
RETRAIN_TAG_PREFIX = "retrain."


class RegistryError(RuntimeError):
    """The registry refused an operation or found an inconsistency."""


@dataclass(frozen=True)
class ModelVersionInfo:
    """What a scorer needs to know about one registered version."""

    model_name: str
    version: int
    aliases: tuple[str, ...]
    artifact_uri: str
    local_path: Path | None
    sha256: str
    feature_names: list[str]
    spec_version: str
    metrics: dict[str, float]
    test_data_id: str | None
    run_id: str | None


def open_registry(settings: Settings) -> ModelRegistry:
    """The configured registry: tracking URI, artifact root, model name and promotion gates."""
    return ModelRegistry(settings.tracking_uri, artifact_root=settings.artifact_root,
                         model_name=settings.registry.model_name, gates=settings.gates)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _local_path(uri: str) -> Path | None:
    """Local file behind an artifact URI (``file://`` or a bare path), else None."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(uri) if parsed.scheme == "" else None


class ModelRegistry:
    """The fraud model's registry on an MLflow tracking URI (sqlite works without a server).

    Parameters
    ----------
    tracking_uri
        MLflow tracking and registry URI; a relative ``sqlite:///`` path is
        relative to the working directory and its folder is created.
    artifact_root
        Artifact location of the experiment when this class creates it.
    model_name
        Registered model name.
    gates
        Promotion gates applied by :meth:`promote` to ``champion``.
    """

    def __init__(self, tracking_uri: str = DEFAULT_TRACKING_URI, *,
                 artifact_root: str | Path = DEFAULT_ARTIFACT_ROOT,
                 model_name: str = DEFAULT_MODEL_NAME, experiment_name: str = DEFAULT_EXPERIMENT,
                 gates: PromotionGates | None = None) -> None:
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.artifact_root = Path(artifact_root).resolve()
        self.model_name = model_name
        self.experiment_name = experiment_name
        self.gates = gates or PromotionGates()
        self._experiment_id: str | None = None

    # -- setup ---------------------------------------------------------------------------

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment_name)
            self._experiment_id = exp.experiment_id if exp else self.client.create_experiment(
                self.experiment_name, artifact_location=self.artifact_root.as_uri())
        return self._experiment_id

    def _ensure_registered_model(self) -> None:
        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            try:
                self.client.create_registered_model(
                    self.model_name, description="fraudstream LightGBM fraud scorer (ONNX)")
            except MlflowException:  # created concurrently
                self.client.get_registered_model(self.model_name)

    # -- write ---------------------------------------------------------------------------

    def register_candidate(self, exported: ExportedModel, *, metrics: Mapping[str, float],
                           params: Mapping[str, object] | None = None,
                           report_dir: str | Path | None = None, test_data_id: str | None = None,
                           alias: str | None = CHALLENGER, run_name: str | None = None) -> dict:
        """Log a run (params, metrics, report, ONNX + sha256) and register a new version.

        Refuses a model whose parity check did not pass. ``test_data_id`` names the
        test data the metrics come from (:func:`training.protocol.frame_fingerprint`);
        champion comparisons need it. The new version gets ``alias`` (None: none).
        """
        if not exported.parity.passed:
            raise RegistryError(f"refusing to register: ONNX parity {exported.parity}")
        sha = exported.sha256
        exp_id = self.experiment_id()
        self._ensure_registered_model()
        run = self.client.create_run(exp_id, run_name=run_name, tags={"fraudstream.kind": "train"})
        run_id = run.info.run_id
        try:
            all_params = {**(params or {}), "onnx_sha256": sha,
                          "feature_spec_version": exported.spec_version,
                          "n_features": len(exported.feature_names)}
            items = [Param(k, str(v)) for k, v in all_params.items()]
            stamp = int(datetime.now(UTC).timestamp() * 1000)
            values = {**metrics, "parity_max_abs_diff": exported.parity.max_abs_diff}
            mets = [Metric(k, float(v), stamp, 0) for k, v in values.items()]
            tags = [RunTag("sha256", sha), RunTag("test_data_id", test_data_id or "")]
            for i in range(0, len(items), 100):
                self.client.log_batch(run_id, params=items[i:i + 100])
            self.client.log_batch(run_id, metrics=mets, tags=tags)
            if report_dir is not None:
                self.client.log_artifacts(run_id, str(report_dir), artifact_path="report")
            model_id, location = self._log_onnx(exp_id, run_id, exported)
            version_tags = {
                "sha256": sha, "feature_names": json.dumps(list(exported.feature_names)),
                "feature_spec_version": exported.spec_version,
                "onnx_model_version": exported.model_version, "test_data_id": test_data_id or "",
                **{f"metric.{k}": repr(float(v)) for k, v in values.items()},
            }
            mv = self.client.create_model_version(
                self.model_name, source=location, run_id=run_id, tags=version_tags,
                model_id=model_id, description=f"onnx {exported.model_version}")
            self.client.set_terminated(run_id, "FINISHED")
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        info = self.get_version(int(mv.version))  # verifies the stored bytes
        if alias:
            self.client.set_registered_model_alias(self.model_name, alias, str(info.version))
        return self._event("registered", info, alias)

    def _log_onnx(self, exp_id: str, run_id: str, exported: ExportedModel) -> tuple[str, str]:
        """Log the ONNX flavor folder as a logged model; return its id and artifact location.

        The version's source is the artifact location (not ``models:/<id>``, which
        MLflow resolves through the process-global tracking URI).
        """
        import mlflow.onnx  # imported late: pulls in the flavor machinery

        logged = self.client.create_logged_model(
            exp_id, name="model", source_run_id=run_id, model_type="onnx",
            tags={"sha256": exported.sha256},
            params={"feature_spec_version": exported.spec_version,
                    "onnx_model_version": exported.model_version})
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            mlflow.onnx.save_model(onnx.load_from_string(exported.onnx_bytes), str(folder),
                                   save_as_external_data=False, pip_requirements=["onnxruntime"],
                                   metadata={"sha256": exported.sha256})
            (folder / ONNX_FILE).write_bytes(exported.onnx_bytes)  # the exact bytes, always
            self.client.log_model_artifacts(logged.model_id, str(folder))
        self.client.finalize_logged_model(logged.model_id, "READY")
        return logged.model_id, logged.artifact_location

    def promote(self, version: int | str, alias: str = CHAMPION, *,
                champion_metrics: Mapping[str, float] | None = None,
                force: bool = False) -> dict:
        """Point ``alias`` at ``version``; for ``champion``, only through the gates.

        Gates for ``champion``: the version's test metrics reach the minimums, and
        it beats the current champion on the *same* test data. The champion's
        stored metrics are used when both versions share a ``test_data_id``;
        otherwise pass ``champion_metrics`` measured on the candidate's test data,
        or the promotion is refused. ``force=True`` skips the gates (recorded in
        the history). A promoted version loses the ``challenger`` alias.
        """
        version = int(version)
        mv = self.client.get_model_version(self.model_name, str(version))
        if alias != CHAMPION:
            self.client.set_registered_model_alias(self.model_name, alias, str(version))
            return self._event("promoted", self._info(mv), alias)
        current = self._alias_version(CHAMPION)
        if current == version:
            raise RegistryError(f"v{version} is already the champion")
        if not force:
            candidate = self._metrics(mv.tags)
            reference = None
            if current is not None:
                reference = champion_metrics
                champ_tags = self.client.get_model_version(self.model_name, str(current)).tags
                same = champ_tags.get("test_data_id") and (
                    champ_tags.get("test_data_id") == mv.tags.get("test_data_id"))
                if reference is None and not same:
                    raise PromotionRefused(version, [
                        f"champion v{current} was evaluated on other test data; pass "
                        "champion_metrics measured on the candidate's test data"])
                reference = reference if reference is not None else self._metrics(champ_tags)
            reasons = self.gates.failures(candidate, reference)
            if reasons:
                raise PromotionRefused(version, reasons)
        self.client.set_registered_model_alias(self.model_name, CHAMPION, str(version))
        if self._alias_version(CHALLENGER) == version:
            self.client.delete_registered_model_alias(self.model_name, CHALLENGER)
        self._append_history({"action": "promoted", "version": version, "previous": current,
                              "forced": force, "at": _now()})
        return self._event("promoted", self.get_version(version), CHAMPION)

    def rollback(self) -> dict:
        """Give ``champion`` back to the previous champion; the history tag keeps the trail."""
        stack = self.champion_stack()
        current = self._alias_version(CHAMPION)
        if len(stack) < 2:
            raise RegistryError("no previous champion to roll back to")
        if stack[-1] != current:
            raise RegistryError(f"champion alias (v{current}) was changed outside this registry "
                                f"(history says v{stack[-1]}); refusing to roll back")
        previous = stack[-2]
        self.client.set_registered_model_alias(self.model_name, CHAMPION, str(previous))
        self.client.set_model_version_tag(self.model_name, str(current), "rolled_back_at", _now())
        self._append_history({"action": "rolled_back", "version": previous, "previous": current,
                              "at": _now()})
        return self._event("rolled_back", self.get_version(previous), CHAMPION)

    # -- read ----------------------------------------------------------------------------

    def history(self) -> list[dict]:
        """The champion history (oldest first), as stored in the registered model's tag."""
        try:
            tags = self.client.get_registered_model(self.model_name).tags
        except MlflowException:
            return []
        return json.loads(tags.get(HISTORY_TAG, "[]"))

    def champion_stack(self) -> list[int]:
        """Past and current champions, replayed from the history (current last)."""
        stack: list[int] = []
        for entry in self.history():
            if entry["action"] == "promoted":
                stack.append(int(entry["version"]))
            elif entry["action"] == "rolled_back" and stack:
                stack.pop()
        return stack

    def list_versions(self) -> list[ModelVersionInfo]:
        """Every version of the registered model, oldest first (files not re-hashed)."""
        found = self.client.search_model_versions(f"name='{self.model_name}'")
        aliases = self._aliases()
        return sorted((self._info(mv, aliases) for mv in found), key=lambda i: i.version)

    def get_version(self, ref: int | str = CHAMPION, *, verify: bool = True) -> ModelVersionInfo:
        """A version by number or alias, with its local ``model.onnx`` path.

        With ``verify`` the file's SHA-256 is checked against the registered one.
        """
        if isinstance(ref, int) or str(ref).isdigit():
            mv = self.client.get_model_version(self.model_name, str(ref))
        else:
            try:
                mv = self.client.get_model_version_by_alias(self.model_name, str(ref))
            except MlflowException as exc:
                raise RegistryError(f"{self.model_name} has no version aliased {ref!r}") from exc
        info = self._info(mv)
        local = info.local_path
        if local is None:
            import mlflow.artifacts

            cache = Path(tempfile.mkdtemp(prefix=f"{self.model_name}-v{info.version}-"))
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.artifact_uri,
                                                             dst_path=str(cache)))
            info = ModelVersionInfo(**{**info.__dict__, "local_path": local})
        if verify:
            actual = sha256_hex(local.read_bytes())
            if actual != info.sha256:
                raise RegistryError(f"v{info.version}: stored {ONNX_FILE} has sha256 {actual}, "
                                    f"registered {info.sha256}")
        return info

    def resolve_alias(self, alias: str) -> tuple[int, str] | None:
        """``(version, sha256)`` that ``alias`` names now, or None if it names none."""
        try:
            mv = self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None
        return int(mv.version), mv.tags.get("sha256", "")

    def load_scorer(self, ref: int | str, expected_features: list[str],
                    expected_spec_version: str, **session_kwargs) -> OnnxScorer:
        """Load a version for scoring through :func:`models.serving.load_onnx_model`."""
        info = self.get_version(ref, verify=False)
        assert info.local_path is not None  # get_version always resolves a local file
        return load_onnx_model(info.local_path, expected_features, expected_spec_version,
                               sha256=info.sha256, **session_kwargs)

    # -- retraining's idempotency keys ---------------------------------------------------

    def handled_retrain(self, key: str) -> dict[str, Any] | None:
        """The outcome recorded for retrain key ``key``, or None if it was never handled."""
        try:
            tags = self.client.get_registered_model(self.model_name).tags
        except MlflowException:
            return None
        raw = tags.get(RETRAIN_TAG_PREFIX + key)
        return None if raw is None else json.loads(raw)

    def mark_retrain_handled(self, key: str, outcome: Mapping[str, object],
                             version: int | None = None) -> None:
        """Record ``outcome`` (JSON) under ``key``; tag ``version`` (if any) with the key."""
        self._ensure_registered_model()
        self.client.set_registered_model_tag(self.model_name, RETRAIN_TAG_PREFIX + key,
                                             json.dumps(outcome))
        if version is not None:
            self.client.set_model_version_tag(self.model_name, str(version),
                                              RETRAIN_TAG_PREFIX + "idempotency_key", key)

    # -- helpers -------------------------------------------------------------------------

    def _aliases(self) -> dict[int, tuple[str, ...]]:
        try:
            model = self.client.get_registered_model(self.model_name)
        except MlflowException:
            return {}
        out: dict[int, tuple[str, ...]] = {}
        for alias, version in (model.aliases or {}).items():
            out[int(version)] = (*out.get(int(version), ()), alias)
        return out

    def _alias_version(self, alias: str) -> int | None:
        for version, names in self._aliases().items():
            if alias in names:
                return version
        return None

    @staticmethod
    def _metrics(tags: Mapping[str, str]) -> dict[str, float]:
        return {k[len("metric."):]: float(v) for k, v in tags.items() if k.startswith("metric.")}

    def _info(self, mv, aliases: dict[int, tuple[str, ...]] | None = None) -> ModelVersionInfo:
        tags = mv.tags
        if "sha256" not in tags or "feature_names" not in tags:
            raise RegistryError(f"v{mv.version} was not registered by fraudstream (no sha256 tag)")
        base = self.client.get_model_version_download_uri(self.model_name, str(mv.version))
        uri = base.rstrip("/") + "/" + ONNX_FILE
        local = _local_path(uri)
        if local is not None:
            uri = local.resolve().as_uri()
        names = (aliases if aliases is not None else self._aliases()).get(int(mv.version), ())
        return ModelVersionInfo(
            model_name=self.model_name, version=int(mv.version), aliases=tuple(sorted(names)),
            artifact_uri=uri, local_path=local, sha256=tags["sha256"],
            feature_names=json.loads(tags["feature_names"]),
            spec_version=tags.get("feature_spec_version", ""), metrics=self._metrics(tags),
            test_data_id=tags.get("test_data_id") or None, run_id=mv.run_id)

    def _append_history(self, entry: dict) -> None:
        log = (self.history() + [entry])[-HISTORY_KEEP:]
        self.client.set_registered_model_tag(self.model_name, HISTORY_TAG, json.dumps(log))

    def _event(self, action: str, info: ModelVersionInfo, alias: str | None) -> dict:
        return ModelUpdate(model_name=self.model_name, action=action, version=info.version,
                           alias=alias, artifact_uri=info.artifact_uri, sha256=info.sha256,
                           event_id=uuid.uuid4().hex, at=_now()).to_dict()
