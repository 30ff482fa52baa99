"""The benchmark run: the goals of the streaming core measured in one run, on one broker.

Sections (``--only`` keys), in the order they run:

* ``latency``: the broker's one-hop floor (a bare aiokafka relay) and the pipeline at an
  offered 1,000 ev/s (p50/p99 overall, p99 of each 10-s window), then the highest offered rate
  keeping p99 <= 100 ms (short probes, the best confirmed over the full duration);
* ``backlog``: N transactions pre-loaded, the Faust micro-batch passthrough and then the full
  pipeline on the same records, each on one fresh worker; events/s from the output records'
  timestamps (start-up excluded);
* ``cards``: the full pipeline on the same number of pre-loaded events over 5,000 and over
  100,000 cards: rate ratio, worker RSS and RSS per 100,000 cards;
* ``score-api``: sequential ``POST /score`` on a worker with Feast on: p50/p99;
* ``profile``: the per-event cost by part (:mod:`bench.profile`);
* ``replay``: the handbook profile replayed at full speed (:mod:`bench.replay`).

Measurements are reported, never asserted. Each section's result is written to the JSON file
as soon as it is known, so a run stopped early keeps what it measured.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.kafka_io import consume, produce
from infra.processes import start_broker
from infra.worker_process import create_topics, isolated_env, start_worker, topic_name

SECTIONS = ("latency", "backlog", "cards", "score-api", "profile", "replay")


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one run (``quick``: a smoke run of a few minutes)."""

    #: the relay runs as long as the pipeline phase (the broker's floor under the same load)
    hop_s: float = 120.0
    faust_s: float = 60.0
    warmup_s: float = 10.0
    latency_s: float = 120.0
    probe_s: float = 15.0
    confirm_s: float = 120.0
    backlog: int = 30_000
    cards_events: int = 60_000
    score_requests: int = 2_000
    profile_events: int = 30_000
    replay: int = 1_758_314
    #: the replay's wait is capped at the goal (10 min): what is not out by then is reported
    replay_cap_s: float = 600.0

    @classmethod
    def quick(cls, replay: int | None = None) -> Plan:
        return cls(hop_s=8.0, faust_s=8.0, warmup_s=3.0, latency_s=20.0, probe_s=5.0,
                   confirm_s=15.0, backlog=10_000, cards_events=20_000, score_requests=300,
                   profile_events=5_000, replay=replay or 50_000, replay_cap_s=300.0)


def _rate(timestamps_ms: list[int]) -> tuple[float, float]:
    span = (max(timestamps_ms) - min(timestamps_ms)) / 1000
    return ((len(timestamps_ms) - 1) / span if span > 0 else float("inf")), span


def worker_run(app: str, bootstrap: str, records: list[tuple[bytes, bytes]], out_role: str,
               workdir: Path, extra_env: dict[str, str], model: bool = False) -> dict[str, Any]:
    """Pre-load the input topic, start ``faust -A app worker``, time the output topic."""
    import psutil

    from bench.scoring import _env, _with_model

    suffix = uuid.uuid4().hex[:8]
    if model:
        env = _env(bootstrap, workdir, suffix, **extra_env)
        _with_model(workdir / suffix)
    else:
        env = isolated_env(bootstrap, workdir / suffix, suffix, **extra_env)
    create_topics(bootstrap, env)
    produce(bootstrap, topic_name("transactions", suffix), records)
    worker = start_worker(env, workdir / f"{suffix}.log", app=app)
    out: dict[str, Any] = {}
    try:
        out["worker_ready_s"] = round(worker.wait_ready(), 2)
        recs = consume(bootstrap, topic_name(out_role, suffix), expected=len(records),
                       timeout=900, settle=0.5)
        out["worker_rss_mb"] = round(psutil.Process(worker.proc.pid).memory_info().rss
                                     / 2**20, 1)
    finally:
        worker.stop()
    rate, span = _rate([r.timestamp for r in recs]) if len(recs) > 1 else (0.0, 0.0)
    out.update(events=len(recs), events_per_s=round(rate), seconds=round(span, 2))
    return out


BASE_ENV = {"FRAUDSTREAM_STORE": "memory://", "FRAUDSTREAM_LOG_LEVEL": "WARNING",
            "FRAUDSTREAM_FEAST_ENABLED": "false"}


def latency_section(bootstrap: str, workdir: Path, plan: Plan,
                    log: Callable[[str], None]) -> dict[str, Any]:
    from bench import latency

    out: dict[str, Any] = {}
    log(f"  one hop (aiokafka relay) at 1,000 ev/s for {plan.hop_s:.0f} s")
    out["one_hop"] = latency.one_hop(bootstrap, workdir, 1_000.0, plan.hop_s).brief()
    log(f"  Faust micro-batch passthrough at 1,000 ev/s for {plan.faust_s:.0f} s")
    with latency.PipelineRun(bootstrap, workdir, app="bench.faust_batch_passthrough") as run:
        warm, main = run.phases_run([(1_000.0, plan.warmup_s), (1_000.0, plan.faust_s)])
        out["faust_passthrough"] = main.brief()
    with latency.PipelineRun(bootstrap, workdir) as run:
        out["worker_ready_s"] = round(run.ready_s, 2)
        log(f"  pipeline at 1,000 ev/s for {plan.latency_s:.0f} s (after {plan.warmup_s:.0f} s "
            "of warm-up)")
        warm, main = run.phases_run([(1_000.0, plan.warmup_s), (1_000.0, plan.latency_s)])
        out["warmup"] = warm.brief()
        out["at_1000"] = main.brief()
        out["gauges_after_1000"] = run.gauges()
        log(f"    p50 {main.p50_ms} ms, p99 {main.p99_ms} ms, {main.received:,} of "
            f"{main.sent:,} out; worker: {out['gauges_after_1000']}")
        log("  rate search (p99 <= 100 ms)")
        out["search"] = latency.rate_search(run, 1_000.0, plan.probe_s, plan.confirm_s,
                                            log=log)
        out["gauges_at_end"] = run.gauges()
        out["worker_rss_mb"] = run.rss_mb()
    return out


def backlog_section(bootstrap: str, workdir: Path, plan: Plan,
                    log: Callable[[str], None]) -> dict[str, Any]:
    from bench.workload import transactions

    records = transactions(plan.backlog)
    log(f"  Faust micro-batch passthrough, {len(records):,} pre-loaded")
    faust = worker_run("bench.faust_batch_passthrough", bootstrap, records, "enriched",
                       workdir, BASE_ENV)
    log(f"    {faust['events_per_s']:,} ev/s; full pipeline ...")
    pipe = worker_run("app", bootstrap, records, "predictions", workdir, {}, model=True)
    log(f"    {pipe['events_per_s']:,} ev/s")
    ratio = pipe["events_per_s"] / faust["events_per_s"] if faust["events_per_s"] else None
    return {"faust_batch_passthrough": faust, "pipeline": pipe,
            "ratio": None if ratio is None else round(ratio, 2)}


def cards_section(bootstrap: str, workdir: Path, plan: Plan,
                  log: Callable[[str], None]) -> dict[str, Any]:
    from bench.workload import transactions

    out: dict[str, Any] = {"events": plan.cards_events}
    for cards in (5_000, 100_000):
        log(f"  full pipeline, {plan.cards_events:,} events over {cards:,} cards")
        records = transactions(plan.cards_events, cards=cards, seed=13)
        out[str(cards)] = worker_run("app", bootstrap, records, "predictions", workdir, {},
                                     model=True)
        out[str(cards)]["cards"] = len({k for k, _ in records})
    small, large = out["5000"], out["100000"]
    if small["events_per_s"]:
        out["ratio"] = round(large["events_per_s"] / small["events_per_s"], 2)
    extra_cards = large["cards"] - small["cards"]
    if extra_cards > 0:
        out["rss_mb_per_100k_cards"] = round(
            (large["worker_rss_mb"] - small["worker_rss_mb"]) * 100_000 / extra_cards, 1)
    return out


def score_api_section(bootstrap: str, workdir: Path, plan: Plan,
                      log: Callable[[str], None]) -> dict[str, Any]:
    from bench.scoring import score_api

    log(f"  {plan.score_requests:,} sequential requests")
    return score_api(bootstrap, workdir, requests=plan.score_requests)


def profile_section(bootstrap: str, plan: Plan, faust_per_s: float | None,
                    log: Callable[[str], None]) -> dict[str, Any]:
    from bench.profile import breakdown

    log(f"  in-process pipeline, {plan.profile_events:,} events")
    return breakdown(bootstrap, plan.profile_events, faust_batch_per_s=faust_per_s)


def replay_section(bootstrap: str, workdir: Path, plan: Plan,
                   log: Callable[[str], None]) -> dict[str, Any]:
    from bench import replay

    return replay.run(bootstrap, workdir, plan.replay, cap_s=plan.replay_cap_s, log=log)


def run(plan: Plan, out_dir: Path, only: set[str] | None = None,
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the sections; returns the report (also written as JSON in ``out_dir``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = out_dir / "work"
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    path = out_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "plan": plan.__dict__, "sections": {}, "seconds": {}, "load": {}, "path": str(path),
    }
    try:
        if not bootstrap:
            broker = start_broker(workdir)
            bootstrap = f"{broker.host}:{broker.port}"
        report["broker"] = "embedded Tansu" if broker else bootstrap
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "latency": lambda: latency_section(bootstrap, workdir, plan, progress),
            "backlog": lambda: backlog_section(bootstrap, workdir, plan, progress),
            "cards": lambda: cards_section(bootstrap, workdir, plan, progress),
            "score-api": lambda: score_api_section(bootstrap, workdir, plan, progress),
            "profile": lambda: profile_section(
                bootstrap, plan, report["sections"].get("backlog", {}).get(
                    "faust_batch_passthrough", {}).get("events_per_s"), progress),
            "replay": lambda: replay_section(bootstrap, workdir, plan, progress),
        }
        for key in SECTIONS:
            if only and key not in only:
                continue
            progress(f"{key} ...")
            started = time.monotonic()
            try:
                report["sections"][key] = steps[key]()
            except Exception as exc:  # a failed section is reported, the others still run
                progress(f"  {key} failed: {exc!r}")
                report["sections"][key] = {"error": repr(exc)}
            report["seconds"][key] = round(time.monotonic() - started, 1)
            # the 5-minute load average at the section's end: the cores were shared if > 2
            report["load"][key] = round(os.getloadavg()[1], 1)
            path.write_text(json.dumps(report, indent=2, default=str))
    finally:
        if broker:
            broker.stop()
    path.write_text(json.dumps(report, indent=2, default=str))
    return report


# -- the table ----------------------------------------------------------------------------------
def _fmt(value: Any, unit: str = "") -> str:
    """A number for the table.

    >>> _fmt(1234.5), _fmt(0.5612), _fmt(None), _fmt(12.25, " ms")
    ('1,234', '0.56', '-', '12.2 ms')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and abs(value) < 10:
        return f"{value:.2f}{unit}"
    if isinstance(value, float) and abs(value) < 100:
        return f"{value:.1f}{unit}"
    if isinstance(value, int | float):
        return f"{value:,.0f}{unit}"
    return f"{value}{unit}"


def _met(ok: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "-"}[ok]


def rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(measurement, value, goal, met)`` rows of the report."""
    s = report["sections"]
    out: list[tuple[str, str, str, str]] = []

    def add(name: str, value: str, goal: str = "", ok: bool | None = None) -> None:
        out.append((name, value, goal, _met(ok) if goal else ""))

    lat = s.get("latency", {})
    if "error" in lat:
        add("latency", lat["error"])
    elif lat:
        hop, main = lat["one_hop"], lat["at_1000"]
        add(f"one hop, aiokafka relay, 1,000 ev/s, {hop['seconds']:.0f} s (broker floor)",
            f"p50 {_fmt(hop['p50_ms'])} / p99 {_fmt(hop['p99_ms'])} ms")
        add("  p99 of each 10-s window (ms)", " ".join(_fmt(w) for w in hop["windows_p99_ms"]))
        complete = main["received"] >= main["sent"]
        if "faust_passthrough" in lat:
            fp = lat["faust_passthrough"]
            add(f"Faust micro-batch passthrough, 1,000 ev/s, {fp['seconds']:.0f} s",
                f"p50 {_fmt(fp['p50_ms'])} / p99 {_fmt(fp['p99_ms'])} ms")
        add(f"pipeline, offered 1,000 ev/s, {main['seconds']:.0f} s: p50 / p99",
            f"{_fmt(main['p50_ms'])} / {_fmt(main['p99_ms'])} ms" + (
                "" if complete else f" ({main['received']:,} of {main['sent']:,} out)"),
            "p99 <= 50 ms", complete and main["p99_ms"] <= 50)
        windows = main["windows_p99_ms"]
        add("  p99 of each 10-s window (ms)", " ".join(_fmt(w) for w in windows))
        if windows:
            flat = complete and max(windows) <= 2 * max(min(windows), 1.0)
            add("  windows flat (max <= 2x min)",
                f"{_fmt(min(windows))}..{_fmt(max(windows))} ms", "flat", flat)
        search = lat["search"]
        best = search.get("confirmed_rate")
        probes = ", ".join(f"{p['rate']:,.0f}:{_fmt(p['p99_ms'])}" for p in search["probes"])
        add(f"highest offered rate with p99 <= 100 ms over {search['confirm_s']:.0f} s",
            f"{_fmt(best)} ev/s" if best else "none", ">= 2,500 ev/s",
            bool(best and best >= 2_500))
        add("  probes (ev/s: p99 ms)", probes)
    back = s.get("backlog", {})
    if "error" in back:
        add("backlog", back["error"])
    elif back:
        faust, pipe = back["faust_batch_passthrough"], back["pipeline"]
        add(f"Faust micro-batch passthrough, {faust['events']:,} pre-loaded",
            f"{_fmt(faust['events_per_s'])} ev/s")
        add("full pipeline, same backlog, one worker", f"{_fmt(pipe['events_per_s'])} ev/s",
            ">= 5,000 ev/s", pipe["events_per_s"] >= 5_000)
        add("  pipeline / Faust passthrough", _fmt(back["ratio"]), ">= 0.55",
            back["ratio"] is not None and back["ratio"] >= 0.55)
    rep = s.get("replay", {})
    if "error" in rep:
        add("replay", rep["error"])
    elif rep:
        n = rep["transactions"]
        done = rep.get("completed", False)
        add(f"replay {n:,} handbook transactions, --speed 0: total",
            f"{_fmt(rep.get('total_s'))} s" + ("" if done else
                                               f" (capped: {rep['scored']:,} scored)"),
            "<= 600 s", bool(done and rep.get("total_s", 1e9) <= 600))
        add(f"  rate first / last {rep['chunk']:,}",
            f"{_fmt(rep.get('first_chunk_per_s'))} / {_fmt(rep.get('last_chunk_per_s'))} ev/s"
            f" ({_fmt(rep.get('last_vs_first'))}x)", ">= 0.8x",
            rep.get("last_vs_first") is not None and rep["last_vs_first"] >= 0.8)
        add("  late (counter / late topic)",
            f"{rep.get('late_counter')} / {rep.get('late_records')}", "0",
            rep.get("late_counter") == 0 and rep.get("late_records") == 0)
        add("  scored (distinct, champion)", f"{rep['scored']:,} of {n:,}", "all",
            rep["scored"] == n)
        if "features_mismatch" in rep:
            add("  features == batch (of the enriched)",
                f"{rep['features_mismatch']:,} differ, {rep['enriched']:,} compared",
                "0 differ", rep["features_mismatch"] == 0)
    cards = s.get("cards", {})
    if "error" in cards:
        add("cards", cards["error"])
    elif cards:
        small, large = cards["5000"], cards["100000"]
        add(f"full pipeline, {cards['events']:,} pre-loaded: 5,000 / 100,000 cards "
            f"({large['cards']:,} seen)",
            f"{_fmt(small['events_per_s'])} / {_fmt(large['events_per_s'])} ev/s")
        add("  100,000 cards / 5,000 cards", _fmt(cards.get("ratio")), ">= 0.8",
            cards.get("ratio") is not None and cards["ratio"] >= 0.8)
        per = cards.get("rss_mb_per_100k_cards")
        add("  worker RSS 5,000 / 100,000 cards; per 100,000 cards",
            f"{_fmt(small['worker_rss_mb'])} / {_fmt(large['worker_rss_mb'])} MB; "
            f"{_fmt(per)} MB", "<= 500 MB", per is not None and per <= 500)
    api = s.get("score-api", {})
    if "error" in api:
        add("POST /score", api["error"])
    elif api:
        add(f"POST /score, {api['ok']:,} sequential: p50 / p99",
            f"{_fmt(api['p50_ms'])} / {_fmt(api['p99_ms'])} ms", "p99 <= 5 ms",
            api["p99_ms"] <= 5)
    prof = s.get("profile", {})
    if "error" in prof:
        add("profile", prof["error"])
    elif prof:
        parts = prof["parts_us"]
        add("per-event cost (µs), in-process pipeline + produce + delivery",
            f"{_fmt(prof['total_us'])} µs total (in process {_fmt(prof['in_process_us_per_event'])}"
            f" wall, {_fmt(prof.get('in_process_cpu_us_per_event'))} cpu; cpu share "
            f"{prof.get('cpu_share')})")
        for name, us in parts.items():
            add(f"  {name}", _fmt(us, " µs"))
    return out


def table(report: dict[str, Any]) -> str:
    """The report as a text table: measurement, value, goal, met."""
    body = rows(report)
    w0 = max([len(r[0]) for r in body] + [11])
    w1 = max([len(r[1]) for r in body] + [5])
    w2 = max([len(r[2]) for r in body] + [4])
    lines = [f"{'measurement':<{w0}}  {'value':<{w1}}  {'goal':<{w2}}  met",
             "-" * (w0 + w1 + w2 + 12)]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c:<{w2}}  {d}".rstrip() for a, b, c, d in body]
    secs = report.get("seconds", {})
    if secs:
        lines.append("")
        lines.append("section seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in secs.items()))
    load = report.get("load", {})
    if load:
        lines.append(f"load average (5 min) at each section's end, {report['machine']['cpus']} "
                     "cpus: " + ", ".join(f"{k} {v}" for k, v in load.items()))
    return "\n".join(lines)
