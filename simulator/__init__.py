"""Synthetic card traffic with known fraud (docs/simulation.md), traffic shaping and replay.

Modules, by concern:

* generation: :mod:`~simulator.config` (profiles, parameters, scenario codes),
  :mod:`~simulator.rng`, :mod:`~simulator.profiles`, :mod:`~simulator.world`,
  :mod:`~simulator.transactions`, :mod:`~simulator.fraud` (handbook scenarios 1-3),
  :mod:`~simulator.geo`, :mod:`~simulator.merchants`, :mod:`~simulator.extensions`
  (scenarios 4-5), :mod:`~simulator.drift` (scenario 6), :mod:`~simulator.generator`;
* output: :mod:`~simulator.ids`, :mod:`~simulator.output`, :mod:`~simulator.labels`;
* sending: :mod:`~simulator.patterns`, :mod:`~simulator.timing`,
  :mod:`~simulator.interleave`, :mod:`~simulator.serialize`, :mod:`~simulator.producer`,
  :mod:`~simulator.sender`;
* replay: :mod:`~simulator.replay`.

>>> from simulator import simulate
>>> sim = simulate("handbook", seed=3, n_customers=100, n_terminals=200, n_days=5)
>>> sim.transactions().num_rows == len(sim)
True
"""

from simulator.config import Scenario, SimConfig, make_config
from simulator.generator import Simulation, generate, simulate

__all__ = ["Scenario", "SimConfig", "Simulation", "generate", "make_config", "simulate"]
