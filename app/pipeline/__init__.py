"""The streaming core: one hop from ``transactions`` + ``transaction-labels`` to predictions.

==============  =============================================================================
module          what
==============  =============================================================================
``agent``       :class:`~app.pipeline.agent.Pipeline`, the hot path as a class (``handle``)
``aligner``     event-time alignment across the owned input partitions
``acks``        in-order acknowledgement after the outputs' delivery futures succeeded
``segments``    the binary state-log record (header + feature rows)
``statelog``    segment writer, card-state replay on assignment, the terminal-view feeder
``view``        the replicated terminal view and the gate that keeps it exact
``runtime``     wiring into a Faust app (agent, timer, feeder, rebalance hooks)
==============  =============================================================================
"""
