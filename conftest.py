"""Root pytest configuration: modules that must not be imported for doctest collection."""

# These build a Faust app and check the broker on import; the integration tests and the
# benchmarks run them as real worker processes instead.
collect_ignore = [
    "app/main.py",
    "bench/faust_passthrough.py",
    "bench/faust_batch_passthrough.py",
]
