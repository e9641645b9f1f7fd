"""How long to wait for a module's reload before calling Asterisk unavailable.

A reload's duration grows with the data (res_pjsip with 10,000 endpoints, app_queue
with 15,000 members take seconds on a busy machine): a constant timeout is either too
short for a big reload (a slow success read as a failure, retried for ever) or too long
to notice a hung Asterisk. The timeout follows the measured durations of that module's
recent reloads: max(ami_timeout_s, FACTOR x the slowest recent one). A reload that
timed out counts as one that took at least that long, so the next wait is longer.
"""

from __future__ import annotations

from collections import deque

# How many recent reloads of a module are remembered.
RECENT = 8
# Wait this many times the slowest recent reload.
FACTOR = 3.0
# Never wait longer than this for one reload.
MAX_S = 600.0


class ReloadTimer:
    def __init__(self, floor_s: float) -> None:
        self.floor_s = floor_s
        self._recent: dict[str, deque[float]] = {}

    def timeout(self, module: str) -> float:
        recent = self._recent.get(module)
        slowest = max(recent) if recent else 0.0
        return max(self.floor_s, min(MAX_S, FACTOR * slowest))

    def record(self, module: str, seconds: float) -> None:
        """A reload of `module` answered after `seconds`."""
        self._recent.setdefault(module, deque(maxlen=RECENT)).append(max(0.0, seconds))

    def timed_out(self, module: str, waited: float) -> None:
        """No answer within `waited` seconds: it takes at least that long."""
        self.record(module, waited)

    def as_dict(self) -> dict[str, float]:
        return {m: round(self.timeout(m), 3) for m in sorted(self._recent)}
