"""The consumer's fetch wait: short when caught up, long while a partition lags (fix 8)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.faust_ext.transport import LAGGING_FETCH_MAX_WAIT_MS, adaptive_fetch_wait, fetch_wait_ms


@dataclass
class State:
    highwater: int | None
    position: int | None

    @property
    def has_valid_position(self) -> bool:
        return self.position is not None


@dataclass
class Assignment:
    states: dict[str, State] = field(default_factory=dict)

    @property
    def tps(self) -> list[str]:
        return list(self.states)

    def state_value(self, tp: str) -> State:
        return self.states[tp]


class Fetcher:
    """aiokafka's Fetcher as far as the wait goes: the wait it reads per request."""

    def __init__(self, wait_ms: int) -> None:
        self._fetch_max_wait_ms = wait_ms
        self._records: dict[str, Any] = {}
        self.requests: list[int] = []

    def _get_actions_per_node(self, assignment: Any) -> str:
        self.requests.append(self._fetch_max_wait_ms)
        return "actions"


def test_caught_up_partitions_keep_the_short_wait() -> None:
    a = Assignment({"t-0": State(100, 100), "t-1": State(0, 0), "idle-0": State(None, None)})
    assert fetch_wait_ms(a, 10, 500) == 10


def test_a_partition_behind_its_highwater_gets_the_long_wait() -> None:
    a = Assignment({"t-0": State(100, 100), "t-1": State(60_654, 38_228)})
    assert fetch_wait_ms(a, 10, 500) == 500


def test_a_partition_with_records_still_buffered_is_not_fetched_so_not_counted() -> None:
    # its position trails the highwater because its fetched records are not consumed yet;
    # the request holds only the others, caught up: a long wait would delay their new records
    a = Assignment({"t-0": State(5_000, 1_000), "t-1": State(300, 300)})
    assert fetch_wait_ms(a, 10, 500, buffered={"t-0"}) == 10
    assert fetch_wait_ms(a, 10, 500) == 500


def test_unknown_highwater_or_position_is_not_lagging() -> None:
    # before the first fetch response: nothing known, the short wait
    a = Assignment({"t-0": State(None, 5), "t-1": State(7, None)})
    assert fetch_wait_ms(a, 10, 500) == 10


def test_the_fetcher_picks_the_wait_before_each_request_and_returns_to_short() -> None:
    fetcher = Fetcher(10)
    adaptive_fetch_wait(fetcher, 10)
    lagging = Assignment({"t-0": State(5_000, 1_000)})
    caught_up = Assignment({"t-0": State(5_000, 5_000)})
    assert fetcher._get_actions_per_node(lagging) == "actions"
    fetcher._get_actions_per_node(caught_up)
    assert fetcher.requests == [LAGGING_FETCH_MAX_WAIT_MS, 10]


def test_no_change_when_the_configured_wait_is_already_long() -> None:
    fetcher = Fetcher(1_500)
    adaptive_fetch_wait(fetcher, 1_500)
    fetcher._get_actions_per_node(Assignment({"t-0": State(5_000, 1_000)}))
    assert fetcher.requests == [1_500]
