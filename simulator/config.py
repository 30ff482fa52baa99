"""Parameters of the simulator: the handbook process and our extensions, grouped by concern.

Two profiles share one generative core (see ``docs/simulation.md``):

* ``"handbook"``: exactly the process of the *Fraud Detection Handbook* (chapter 3);
  no geography, merchant category or channel (those columns are null).
* ``"realistic"``: the handbook process plus geography, merchant categories and channels,
  card-not-present fraud at online merchants, impossible travel and card testing, and an
  optional drift (a new fraud pattern from a chosen time on).

Every random draw comes from a named stream derived from the seed (:mod:`simulator.rng`),
so the genuine traffic and the three handbook scenarios of a ``realistic`` run are the same
draws as the ``handbook`` run with the same seed.

>>> cfg = make_config("realistic", seed=7, n_customers=100, drift_start="2018-05-01")
>>> cfg.profile, cfg.handbook.n_customers, cfg.drift.start_ms - cfg.start_ms
('realistic', 100, 2592000000)
>>> make_config("handbook").geo is None
True
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import IntEnum
from typing import Literal

Profile = Literal["handbook", "realistic"]
PROFILES: tuple[str, ...] = ("handbook", "realistic")
DAY_MS = 86_400_000


class Scenario(IntEnum):
    """Fraud scenario codes (``scenario`` column; for analysis only, never a model input)."""

    GENUINE = 0
    LARGE_AMOUNT = 1
    COMPROMISED_TERMINAL = 2
    COMPROMISED_CARD_CNP = 3
    IMPOSSIBLE_TRAVEL = 4
    CARD_TESTING = 5
    DRIFT_NIGHT_TAKEOVER = 6


@dataclass(frozen=True)
class HandbookParams:
    """The handbook's generative process (defaults are the published ones)."""

    n_customers: int = 5_000
    n_terminals: int = 10_000
    n_days: int = 183
    grid_size: float = 100.0
    radius: float = 5.0
    mean_amount_range: tuple[float, float] = (5.0, 100.0)
    tx_per_day_range: tuple[float, float] = (0.0, 4.0)
    time_mean_s: float = 43_200.0
    time_std_s: float = 20_000.0
    large_amount: float = 220.0
    terminals_per_day: int = 2
    terminal_window_days: int = 28
    cards_per_day: int = 3
    card_window_days: int = 14
    card_fraud_share: float = 1 / 3
    card_amount_factor: float = 5.0


@dataclass(frozen=True)
class GeoConfig:
    """Map of the grid onto a real bounding box split into a grid of countries.

    ``countries`` lists rows from south to north, each row from west to east. The default box
    is about 1,000 km a side (9 degrees of latitude, 14 of longitude at 49.5 N).
    """

    lat_min: float = 45.0
    lat_max: float = 54.0
    lon_min: float = 0.0
    lon_max: float = 14.0
    countries: tuple[tuple[str, ...], ...] = (("FR", "CH", "AT"), ("BE", "DE", "CZ"))


@dataclass(frozen=True)
class MerchantConfig:
    """Merchant category codes (MCC) and channels of the terminals."""

    online_share: float = 0.15
    card_present_mccs: tuple[tuple[str, float], ...] = (
        ("5411", 0.30), ("5812", 0.18), ("5541", 0.12), ("5912", 0.08), ("5311", 0.08),
        ("5999", 0.10), ("4111", 0.07), ("7011", 0.05), ("7995", 0.02),
    )
    online_mccs: tuple[tuple[str, float], ...] = (
        ("5399", 0.20), ("4899", 0.15), ("4722", 0.12), ("5964", 0.13), ("5816", 0.15),
        ("7995", 0.10), ("6051", 0.05), ("4829", 0.05), ("5967", 0.05),
    )
    high_risk_mccs: frozenset[str] = frozenset({"5816", "5967", "6051", "4829", "7995"})


@dataclass(frozen=True)
class ExtensionConfig:
    """Our fraud scenarios beyond the handbook (codes 4 and 5) and CNP at online merchants."""

    cnp_online: bool = True
    cnp_high_risk_share: float = 0.5
    travel_per_day: float = 2.0
    travel_min_km: float = 500.0
    travel_gap_s: tuple[float, float] = (60.0, 900.0)
    travel_burst: tuple[int, int] = (1, 3)
    testing_per_day: float = 1.5
    testing_small: tuple[int, int] = (5, 15)
    testing_small_amount: tuple[float, float] = (0.5, 1.99)
    testing_gap_s: tuple[float, float] = (5.0, 60.0)
    testing_large_amount: tuple[float, float] = (300.0, 1_500.0)
    testing_large_delay_s: tuple[float, float] = (60.0, 600.0)


@dataclass(frozen=True)
class DriftConfig:
    """From ``start_ms`` on, a new fraud pattern (code 6): night-time online account takeover.

    Compromised cards buy, between ``night_hours``, a few moderate amounts at online merchants
    of another country than the card's home. The amounts are ordinary, so a model that learned
    "fraud = large amount or compromised terminal" misses them: this is what drift detection
    and retraining must catch.
    """

    start_ms: int
    cards_per_day: float = 6.0
    burst: tuple[int, int] = (3, 8)
    amount: tuple[float, float] = (20.0, 150.0)
    night_hours: tuple[float, float] = (0.0, 5.0)


@dataclass(frozen=True)
class SimConfig:
    """Everything one run needs; build it with :func:`make_config`."""

    profile: Profile = "handbook"
    seed: int = 0
    start_ms: int = 1_522_540_800_000  # 2018-04-01T00:00:00Z
    currency: str = "EUR"
    handbook: HandbookParams = field(default_factory=HandbookParams)
    geo: GeoConfig | None = None
    merchants: MerchantConfig | None = None
    extensions: ExtensionConfig | None = None
    drift: DriftConfig | None = None

    @property
    def end_ms(self) -> int:
        """End of the simulated period (exclusive), epoch ms."""
        return self.start_ms + self.handbook.n_days * DAY_MS


def to_epoch_ms(value: str | datetime | int | float) -> int:
    """Epoch milliseconds (UTC) from an ISO date/time, a datetime or a number of ms.

    Naive dates and times are taken as UTC.

    >>> to_epoch_ms("2018-04-01"), to_epoch_ms("2018-04-01T02:00:00+02:00")
    (1522540800000, 1522540800000)
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(round(moment.timestamp() * 1000))


def make_config(
    profile: Profile = "handbook",
    *,
    seed: int = 0,
    start: str | datetime | int = "2018-04-01",
    drift_start: str | datetime | int | None = None,
    currency: str = "EUR",
    **handbook: object,
) -> SimConfig:
    """A :class:`SimConfig` for ``profile``; keyword arguments override :class:`HandbookParams`.

    ``drift_start`` (realistic profile only) switches the drift pattern on from that time.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    params = replace(HandbookParams(), **handbook)  # type: ignore[arg-type]
    start_ms = to_epoch_ms(start)
    cfg = SimConfig(profile=profile, seed=seed, start_ms=start_ms, currency=currency,
                    handbook=params)
    if profile == "handbook":
        if drift_start is not None:
            raise ValueError("drift injection needs the realistic profile")
        return cfg
    drift = None if drift_start is None else DriftConfig(start_ms=to_epoch_ms(drift_start))
    return replace(cfg, geo=GeoConfig(), merchants=MerchantConfig(),
                   extensions=ExtensionConfig(), drift=drift)
