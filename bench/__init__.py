"""sipprov benchmarks: how fast an agent becomes registrable, against Asterisk's floor.

`python -m bench` sets everything up itself (embedded PostgreSQL, its own PBX instance,
the service in-process on a loopback port), measures, prints a table and writes
bench/results.json and docs/benchmarks.md. See docs/benchmarks.md for what is measured
and how; `python -m bench --help` for the options.

Modules:
- env.py       the environment: temp dir, PostgreSQL, PBX instance, service, clients
- floor.py     Asterisk's own reload time for N hand-written endpoints (the floor)
- scenarios.py the measured scenarios (create, rotate, burst, bulk import, memory)
- stats.py     medians / percentiles
- machine.py   machine and version facts
- report.py    table, results.json, docs/benchmarks.md
- runner.py    the order of the stages
"""

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    from .runner import main as _main

    return _main(argv)
