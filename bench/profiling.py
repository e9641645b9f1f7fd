"""Optional pyinstrument profiles of the slow stages (`--profile DIR`).

pyinstrument samples the thread it was started in: here the event loop's thread, which
runs the service (HTTP handlers, service layer, applier) and the bench's clients. Work
sent to threads (`asyncio.to_thread`: the render, file writes, argon2) is not sampled;
bench/scenarios.py times the apply steps (snapshot, render, write) on their own for that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from .env import stage


class Profiles:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.written: dict[str, str] = {}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    @contextlib.contextmanager
    def profile(self, name: str) -> Iterator[None]:
        if self.directory is None:
            yield
            return
        try:
            from pyinstrument import Profiler
        except ImportError:
            stage("profile: pyinstrument is not installed (pip install -e '.[bench]')")
            self.directory = None
            yield
            return
        profiler = Profiler(interval=0.002, async_mode="disabled")
        profiler.start()
        try:
            yield
        finally:
            profiler.stop()
            from pyinstrument.renderers import ConsoleRenderer

            # Most of a stage is the loop waiting (on Asterisk, threads, SIPp): keep
            # frames down to 0.05 % of the wall time so the CPU work shows, then a
            # flat list of where CPU time is spent (self time).
            tree = profiler.output(ConsoleRenderer(
                unicode=True, processor_options={"filter_threshold": 0.0005}))
            flat = profiler.output(ConsoleRenderer(
                unicode=True, flat=True, processor_options={"filter_threshold": 0.0005}))
            path = self.directory / f"{name}.txt"
            path.write_text(tree + "\n\n--- flat (self time) ---\n" + flat)
            with contextlib.suppress(Exception):
                (self.directory / f"{name}.html").write_text(profiler.output_html())
            self.written[name] = str(path)
            stage(f"profile written: {path}")
