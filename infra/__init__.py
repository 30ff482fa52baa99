"""Entry points for running fraudstream on one machine: the embedded stack and the demo.

:mod:`infra.processes` starts and stops the embedded servers (Tansu broker, valkey-server),
:mod:`infra.stack` is ``fraudstream stack``, :mod:`infra.demo` is ``make demo``,
:mod:`infra.worker_process` runs a worker as a child process (demo, benchmarks, tests) and
:mod:`infra.kafka_io` is plain aiokafka produce/consume for tools. This is a top layer: it
may import anything below it, and the Faust app (``app/``) never imports it; what the app
needs (endpoints, topic admin, security) is in :mod:`config`.
"""
