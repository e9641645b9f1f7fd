"""Progress of long CLI jobs (bulk import/export): a tqdm bar on a terminal, plain
periodic lines otherwise.

Bulk jobs run from cron and CI as often as by hand; a bar's carriage returns make
unreadable logs, so when stderr is not a terminal we print one line per step every few
seconds instead. Progress always goes to stderr: stdout is kept for results (--json).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

from tqdm import tqdm


class Progress:
    """One step of a job ("validate", "write", "apply", "hash") with a known total."""

    def __init__(
        self,
        desc: str,
        total: int | None,
        *,
        unit: str = "row",
        enabled: bool = True,
        stream: IO[str] | None = None,
        interval_s: float = 5.0,
        on_update: Callable[[str, int, int | None], None] | None = None,
    ) -> None:
        self.desc = desc
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = enabled
        self._interval = interval_s
        self._started = time.monotonic()
        self._last_line = self._started
        self._bar: tqdm | None = None
        self._on_update = on_update
        if enabled and _is_tty(self._stream):
            self._bar = tqdm(
                total=total, desc=desc, unit=unit, file=self._stream, leave=True,
                dynamic_ncols=True,
            )

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._on_update is not None:
            self._on_update(self.desc, self.done, self.total)
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self._enabled and now - self._last_line >= self._interval:
            self._last_line = now
            self._line("...")

    def set(self, done: int) -> None:
        """Jump to an absolute count (for steps that report totals, not increments)."""
        self.update(done - self.done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._enabled:
            self._line("done")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self, state: str) -> None:
        elapsed = time.monotonic() - self._started
        total = f"/{self.total}" if self.total is not None else ""
        print(
            f"{self.desc}: {self.done}{total} {self.unit}s {state} ({elapsed:.1f}s)",
            file=self._stream, flush=True,
        )


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
