"""Train → evaluate → export → register → gate → promote: the one entry point.

``fraudstream train`` and the retrain worker both call :func:`train_and_register`, which runs
one named function per step. It imports no Faust code. Steps, with the handbook protocol
(Le Borgne et al., 2022) by default:

1. **Split** by time (:func:`choose_split`): train on ``FRAUDSTREAM_TRAIN_WINDOW_DAYS`` from
   ``train_start``, leave ``FRAUDSTREAM_TRAIN_DELAY_DAYS`` (labels not yet known), test on the
   ``FRAUDSTREAM_TRAIN_TEST_DAYS`` after; cards known to be compromised before a test day are
   removed from that day (:func:`training.protocol.handbook_split`).
2. **Validate** (:func:`fit_and_evaluate`, :func:`fit_split`): the same protocol shifted back
   by delay + test days gives a validation split that ends before the training window starts;
   LightGBM is early-stopped on its test period (average precision), which picks the number of
   trees. The model is then refitted on the real training window with that many trees. The
   test set is never used to choose anything. When the data does not reach back far enough,
   the last days of the training window are the validation period instead (recorded in the
   report).
3. **Threshold**: the score that would have raised ``FRAUDSTREAM_ALERT_BUDGET_PER_DAY`` alerts a
   day on the delay days (after training, before testing; no labels needed).
4. **Evaluate** on the test days: AUC ROC, AP, card precision@100, precision / recall / F1 and
   confusion at the threshold; a Markdown report with PNG plots
   (:func:`write_training_report`, :mod:`training.report`).
5. **Export** to ONNX with a parity check on every test and training row (refused past 1e-5;
   :func:`export_checked`).
6. **Register** as ``challenger`` (MLflow run with params, metrics, report, ONNX + sha256;
   :func:`register_and_gate`, on the registry of :func:`models.registry.open_registry`).
7. **Gate and promote** to ``champion``: minimum metrics; when a champion exists, it is scored
   on the *same* test rows and must be beaten by the configured margin.
8. **Publish** a ``model-updates`` event per registry change (skipped, and said so, when no
   broker answers; :func:`models.events.publish_model_updates`).

Optionally, a prequential evaluation (several test weeks, the same fit procedure per fold)
reports mean ± std (:func:`add_prequential`).
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from config.gates import PromotionRefused
from config.settings import Settings
from models.artifact import ExportedModel
from training.dataset import TrainingFrame
from training.lgbm import LGBMParams, TrainedModel, train_lgbm
from training.metrics import (
    card_precision_at_k_per_day,
    confusion,
    day_index,
    evaluate,
    precision_recall_f1,
    threshold_for_daily_budget,
)
from training.protocol import (
    PrequentialResult,
    Split,
    frame_fingerprint,
    from_day,
    handbook_split,
    prequential_evaluate,
)

log = logging.getLogger(__name__)

K = 100
HANDBOOK_TRAIN_START = "2018-07-25"
#: Published handbook results on simulated data (docs/simulation.md): the best of each metric.
PUBLISHED_BEST = {"auc_roc": 0.879, "average_precision": 0.694, "card_precision_at_100": 0.305}
HEADLINE = ("auc_roc", "average_precision", f"card_precision_at_{K}")

Echo = Callable[[str], None]


def latest_train_start(frame: pd.DataFrame, train_days: int, delay_days: int,
                       test_days: int) -> date:
    """The latest training start whose test window ends on the data's last day.

    >>> f = pd.DataFrame({"ts": [0, 20 * 86_400_000 + 5]})
    >>> latest_train_start(f, 7, 7, 7)
    datetime.date(1970, 1, 1)
    """
    last_day = int(day_index(frame["ts"]).max())
    return from_day(last_day + 1 - (train_days + delay_days + test_days))


# -- fitting ------------------------------------------------------------------------------


@dataclass
class Fit:
    """A model fitted for one split, and how its size and threshold were chosen."""

    model: TrainedModel
    threshold: float
    validation: dict[str, object]


def _usable(part: pd.DataFrame) -> bool:
    return len(part) > 0 and part["is_fraud"].nunique() == 2


def fit_split(frame: pd.DataFrame, split: Split, feature_names: list[str], params: LGBMParams,
              *, budget: float = 100.0, budget_unit: str = "card", progress: bool = False,
              ) -> Fit:
    """Fit on ``split.train`` with the tree count early-stopped on an earlier validation split.

    The validation split is :func:`handbook_split` started ``delay + test`` days before
    ``split``: its training and test windows both end before ``split.train`` starts... except
    its test window, which is ``split``'s own training window (as in the handbook, ch. 5): data
    before the delay, never the test days.
    """
    delay = split.test_start - split.train_end
    test_days = split.test_end - split.test_start
    train_days = split.train_end - split.train_start
    val = handbook_split(frame, from_day(split.train_start - delay - test_days),
                         train_days=train_days, delay_days=delay, test_days=test_days)
    if _usable(val.train) and _usable(val.test):
        probe = train_lgbm(val.train, feature_names, params, valid=val.test, progress=progress)
        rounds = probe.best_iteration
        final_params = params.model_copy(update={"num_boost_round": rounds})
        model = train_lgbm(split.train, feature_names, final_params, progress=progress)
        model.best_iteration = rounds
        validation = {"method": "earlier split (handbook ch. 5)",
                      "validation_train": f"{from_day(val.train_start)}..{from_day(val.train_end)}",
                      "validation_test": f"{from_day(val.test_start)}..{from_day(val.test_end)}",
                      "best_iteration": rounds,
                      "validation_average_precision": _best(probe, "average_precision")}
    else:
        valid_days = max(1, train_days // 4)
        inner = handbook_split(frame, from_day(split.train_start), train_days=train_days,
                               delay_days=delay, test_days=test_days, valid_days=valid_days)
        model = train_lgbm(inner.train, feature_names, params, valid=inner.valid,
                           progress=progress)
        validation = {"method": f"last {valid_days} day(s) of the training window "
                                "(no data before it for an earlier split)",
                      "best_iteration": model.best_iteration,
                      "validation_average_precision": _best(model, "average_precision")}
    delay_rows = frame[(day_index(frame["ts"]) >= split.train_end)
                       & (day_index(frame["ts"]) < split.test_start)]
    basis = delay_rows if len(delay_rows) else split.train
    threshold = threshold_for_daily_budget(basis.assign(score=model.predict(basis)), budget,
                                           unit=budget_unit)
    validation["threshold_rule"] = (f"{budget:g} {budget_unit} alerts/day on the "
                                    f"{'delay' if len(delay_rows) else 'training'} days")
    return Fit(model=model, threshold=threshold, validation=validation)


def _best(model: TrainedModel, metric: str) -> float:
    values = model.history.get(metric) or []
    if not values:
        return float("nan")
    return float(values[model.best_iteration - 1]) if model.best_iteration <= len(values) \
        else float(max(values))


def scored_metrics(scored: pd.DataFrame, threshold: float) -> dict[str, float]:
    """Headline metrics plus precision / recall / F1 / confusion at ``threshold``.

    >>> f = pd.DataFrame({"card_id": [1, 2, 3, 4], "ts": 0, "is_fraud": [0, 1, 0, 1],
    ...                   "score": [0.1, 0.9, 0.4, 0.3]})
    >>> m = scored_metrics(f, 0.35)
    >>> m["auc_roc"], m["precision"], m["tp"], m["fp"], m["threshold"]
    (0.75, 0.5, 1.0, 1.0, 0.35)
    """
    y = scored["is_fraud"].to_numpy()
    s = scored["score"].to_numpy()
    out = evaluate(scored, k=K)
    out.update(precision_recall_f1(y, s, threshold))
    out.update({k: float(v) for k, v in confusion(y, s, threshold).items()})
    out["threshold"] = float(threshold)
    return out


# -- the pipeline -------------------------------------------------------------------------


@dataclass
class TrainResult:
    """Everything one training run produced (the CLI prints :meth:`lines`)."""

    model_name: str
    version: int | None
    metrics: dict[str, float]
    split: dict[str, object]
    validation: dict[str, object]
    parity_max_abs_diff: float
    parity_rows: int
    report_path: Path
    test_data_id: str
    champion_before: int | None = None
    champion_metrics: dict[str, float] | None = None
    champion_note: str | None = None
    promoted: bool = False
    refused: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    publish: object | None = None
    prequential: PrequentialResult | None = None
    onnx_sha256: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    model: TrainedModel | None = field(default=None, repr=False)
    test: pd.DataFrame | None = field(default=None, repr=False)

    def lines(self) -> list[str]:
        """Human-readable summary."""
        out = [f"test {self.split['test']} ({self.split['test_rows']:,} rows, "
               f"{self.split['test_frauds']} frauds, "
               f"{self.split['removed_known_compromised_test_rows']} known-compromised rows "
               "removed)",
               "metric                  this model   published best"]
        for key in HEADLINE:
            pub = PUBLISHED_BEST.get(key)
            mark = "" if pub is None else ("  beats" if self.metrics[key] > pub else "  BELOW")
            out.append(f"{key:<22}  {self.metrics[key]:>10.4f}   {pub:>10.3f}{mark}")
        rule = self.validation["threshold_rule"]
        out.append(f"threshold {self.metrics['threshold']:.6g} ({rule}): precision "
                   f"{self.metrics['precision']:.3f} recall "
                   f"{self.metrics['recall']:.3f} f1 {self.metrics['f1']:.3f}")
        if self.prequential is not None:
            n = len(self.prequential.folds)
            out.append(f"prequential over {n} test weeks (mean ± std):")
            out += ["  " + line for line in self.prequential.format(4).splitlines()]
        out.append(f"ONNX parity: max |p_onnx - p_lightgbm| = {self.parity_max_abs_diff:.3g} "
                   f"on {self.parity_rows:,} rows")
        if self.version is not None:
            out.append(f"registered {self.model_name} v{self.version} (challenger), "
                       f"sha256 {self.onnx_sha256[:16]}…")
        if self.champion_note:
            out.append(self.champion_note)
        if self.promoted:
            out.append(f"promoted v{self.version} to champion")
        elif self.refused:
            out.append("not promoted: " + "; ".join(self.refused))
        if self.publish is not None:
            out.append(self.publish.line())  # type: ignore[attr-defined]
        out.append(f"report: {self.report_path}")
        return out


def _published_section(metrics: dict[str, float]) -> dict[str, object]:
    return {key: f"{metrics[key]:.4f} vs {pub:.3f} ({'beats' if metrics[key] > pub else 'below'})"
            for key, pub in PUBLISHED_BEST.items()}


def run_prequential(frame: pd.DataFrame, feature_names: list[str], settings: Settings,
                    first_train_start: str | date, n_folds: int, *, progress: bool = False,
                    ) -> PrequentialResult:
    """Mean ± std over ``n_folds`` test weeks, each fold fitted like the main model."""
    params = settings.lgbm
    win = settings.training.windows()

    def fit_predict(split: Split) -> np.ndarray:
        fit = fit_split(frame, split, feature_names, params,
                        budget=settings.training.alert_budget_per_day,
                        budget_unit=settings.training.alert_budget_unit)
        return fit.model.predict(split.test)

    return prequential_evaluate(frame, first_train_start, fit_predict, n_folds,
                                step_days=win["test_days"], k=K, progress=progress, **win)


def prequential_start(frame: pd.DataFrame, train_start: date, n_folds: int,
                      win: dict[str, int]) -> date:
    """First fold's training start: ``train_start``, moved earlier if the folds would overrun.

    >>> f = pd.DataFrame({"ts": [d * 86_400_000 for d in range(60)]})
    >>> w = {"train_days": 7, "delay_days": 7, "test_days": 7}
    >>> prequential_start(f, date(1970, 1, 20), 4, w)
    datetime.date(1970, 1, 19)
    """
    latest = latest_train_start(frame, **win)
    return min(train_start, latest - timedelta(days=(n_folds - 1) * win["test_days"]))


def _champion_on_test(registry, split: Split, data: TrainingFrame, echo: Echo,
                      ) -> tuple[int | None, dict[str, float] | None, str | None]:
    """The current champion's metrics on this test split (None when there is no champion)."""
    from models.registry import CHAMPION, RegistryError
    from models.serving import ModelMismatchError

    try:
        info = registry.get_version(CHAMPION, verify=False)
    except RegistryError:
        return None, None, None
    try:
        scorer = registry.load_scorer(CHAMPION, data.feature_names, data.spec_version)
    except (ModelMismatchError, RegistryError) as exc:
        note = (f"champion v{info.version} cannot score this feature spec ({exc}); the gates "
                "compare with the minimum metrics only")
        echo(note)
        return info.version, None, note
    scored = split.test.assign(score=scorer.predict(split.test).astype(np.float64))
    metrics = evaluate(scored, k=K)
    note = (f"champion v{info.version} on the same test rows: " +
            ", ".join(f"{k} {metrics[k]:.4f}" for k in HEADLINE))
    return info.version, metrics, note


def choose_split(frame: pd.DataFrame, settings: Settings, train_start: str | date | None,
                 say: Echo) -> tuple[str | date, Split]:
    """Step 1: the handbook split at ``train_start`` (default: the latest window that fits)."""
    win = settings.training.windows()
    start = train_start or latest_train_start(frame, **win)
    split = handbook_split(frame, start, **win)
    if not _usable(split.train) or not len(split.test):
        raise ValueError(f"split starting {start} has no usable training rows (both classes) "
                         f"or no test rows: {split.describe()}")
    say(f"split: train {split.describe()['train']}, test {split.describe()['test']}")
    return start, split


def fit_and_evaluate(data: TrainingFrame, split: Split, settings: Settings, *,
                     progress: bool, say: Echo) -> tuple[Fit, pd.DataFrame, dict[str, float]]:
    """Steps 2-4: fit (tree count from a validation split), threshold, test metrics."""
    training = settings.training
    fit = fit_split(data.frame, split, data.feature_names, settings.lgbm,
                    budget=training.alert_budget_per_day, budget_unit=training.alert_budget_unit,
                    progress=progress)
    scored = split.test.assign(score=fit.model.predict(split.test))
    metrics = scored_metrics(scored, fit.threshold)
    say(", ".join(f"{k} {metrics[k]:.4f}" for k in HEADLINE))
    return fit, scored, metrics


def add_prequential(data: TrainingFrame, settings: Settings, start: str | date, n_folds: int,
                    metrics: dict[str, float], *, progress: bool) -> PrequentialResult:
    """Optional: mean ± std over ``n_folds`` test weeks, added to ``metrics``."""
    win = settings.training.windows()
    first = prequential_start(data.frame, pd.Timestamp(start).date(), n_folds, win)
    preq = run_prequential(data.frame, data.feature_names, settings, first, n_folds,
                           progress=progress)
    for key, (mean, std) in preq.summary().items():
        metrics[f"prequential_{key}_mean"] = mean
        metrics[f"prequential_{key}_std"] = 0.0 if math.isnan(std) else std
    return preq


def export_checked(data: TrainingFrame, split: Split, fit: Fit, settings: Settings,
                   say: Echo) -> ExportedModel:
    """Step 5: ONNX export with the parity check on every training and test row."""
    from training.onnx_export import export_model
    from training.refstats import reference_stats

    names = data.feature_names
    parity_rows = pd.concat([split.train, split.test])
    ref = reference_stats(split.train, names, fit.model.predict(split.train))
    exported = export_model(fit.model, parity_rows, spec_version=data.spec_version,
                            model_name=settings.registry.model_name, reference=ref)
    say(f"ONNX parity max |diff| {exported.parity.max_abs_diff:.3g} on "
        f"{exported.parity.n_rows:,} rows")
    return exported


def write_training_report(out_dir: Path, data: TrainingFrame, split: Split, fit: Fit,
                          scored: pd.DataFrame, metrics: dict[str, float],
                          exported: ExportedModel, preq: PrequentialResult | None,
                          settings: Settings) -> Path:
    """Step 4's report: Markdown and plots, with every choice the run made."""
    from training.report import write_report

    sections: dict[str, dict[str, object]] = {
        "Compared with the published handbook results": _published_section(metrics),
        "Data": {**split.describe(), **{f"source.{k}": v for k, v in data.source.items()},
                 "feature_spec_version": data.spec_version},
        "Validation and threshold": dict(fit.validation),
        "ONNX": {"parity_max_abs_diff": exported.parity.max_abs_diff,
                 "parity_rows": exported.parity.n_rows, "sha256": exported.sha256,
                 "onnx_model_version": exported.model_version},
        "Hyperparameters": {**settings.lgbm.model_dump(), "trees": fit.model.best_iteration},
    }
    if preq is not None:
        title = "Prequential (mean ± std over test weeks)"
        sections[title] = {k: f"{m:.4f} ± {s:.4f}" for k, (m, s) in preq.summary().items()}
        for row in preq.folds.itertuples(index=False):
            sections[title][f"fold {row.fold} test {row.test_start}"] = (
                f"AUC {row.auc_roc:.4f}, AP {row.average_precision:.4f}, "
                f"CP@100 {getattr(row, f'card_precision_at_{K}'):.4f}")
    return write_report(out_dir, scored, metrics={k: metrics[k] for k in HEADLINE},
                        importance=fit.model.feature_importance(), threshold=fit.threshold,
                        cp_per_day=card_precision_at_k_per_day(scored, K), sections=sections,
                        title=f"{settings.registry.model_name}: test {split.describe()['test']}")


def register_and_gate(data: TrainingFrame, split: Split, fit: Fit, metrics: dict[str, float],
                      exported: ExportedModel, report: Path, out_dir: Path,
                      preq: PrequentialResult | None, settings: Settings, *, promote: bool,
                      say: Echo) -> TrainResult:
    """Steps 6-7: register as challenger, score the champion on the same test rows, promote
    through the gates."""
    from models.registry import CHALLENGER, open_registry

    registry = open_registry(settings)
    model_name = settings.registry.model_name
    test_id = frame_fingerprint(split.test)
    champ_version, champ_metrics, champ_note = _champion_on_test(registry, split, data, say)
    run_params = {**settings.lgbm.model_dump(), "trees": fit.model.best_iteration,
                  "threshold_rule": fit.validation["threshold_rule"],
                  **{f"split.{k}": v for k, v in split.describe().items()},
                  **{f"source.{k}": v for k, v in data.source.items()}}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    event = registry.register_candidate(exported, metrics=metrics, params=run_params,
                                        report_dir=out_dir, test_data_id=test_id,
                                        alias=CHALLENGER, run_name=f"train-{stamp}")
    version = int(event["version"])
    say(f"registered {model_name} v{version} as challenger")
    result = TrainResult(
        model_name=model_name, version=version, metrics=metrics,
        split=split.describe(), validation=fit.validation,
        parity_max_abs_diff=exported.parity.max_abs_diff, parity_rows=exported.parity.n_rows,
        report_path=report, test_data_id=test_id, champion_before=champ_version,
        champion_metrics=champ_metrics, champion_note=champ_note, prequential=preq,
        onnx_sha256=exported.sha256, model=fit.model, test=split.test, events=[event])
    if promote:
        try:
            result.events.append(registry.promote(version,
                                                  champion_metrics=champ_metrics or None))
            result.promoted = True
        except PromotionRefused as exc:
            result.refused = list(exc.reasons)
    elif champ_version is None:
        result.refused = ["--no-promote"]
    return result


def train_and_register(
    data: TrainingFrame,
    settings: Settings,
    *,
    train_start: str | date | None = None,
    promote: bool = True,
    prequential: int = 0,
    publish: bool = True,
    progress: bool = False,
    echo: Echo | None = None,
    report_dir: str | Path | None = None,
) -> TrainResult:
    """Run the whole pipeline on ``data``; see the module docstring.

    ``train_start`` defaults to the latest window that fits the data. ``prequential`` > 0
    adds that many test weeks' mean ± std. Raises :class:`training.onnx_export.ParityError`
    (nothing registered) when ONNX and LightGBM disagree.
    """
    from models.events import publish_model_updates

    say = echo or log.info
    clock = _Clock()
    start, split = choose_split(data.frame, settings, train_start, say)
    fit, scored, metrics = fit_and_evaluate(data, split, settings, progress=progress, say=say)
    clock.lap("fit")
    preq = None
    if prequential > 0:
        preq = add_prequential(data, settings, start, prequential, metrics, progress=progress)
        clock.lap("prequential")
    exported = export_checked(data, split, fit, settings, say)
    clock.lap("export")
    out_dir = Path(report_dir) if report_dir else Path(tempfile.mkdtemp(prefix="fs-report-"))
    report = write_training_report(out_dir, data, split, fit, scored, metrics, exported, preq,
                                   settings)
    clock.lap("report")
    result = register_and_gate(data, split, fit, metrics, exported, report, out_dir, preq,
                               settings, promote=promote, say=say)
    clock.lap("registry")
    if publish:
        result.publish = publish_model_updates(result.events, settings)
    result.timings = clock.laps
    return result


class _Clock:
    def __init__(self) -> None:
        import time

        self._now = time.perf_counter
        self._last = self._now()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = self._now()
        self.laps[name] = round(now - self._last, 2)
        self._last = now
