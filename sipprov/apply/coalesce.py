"""Coalescing: wait for a burst of changes to end before applying.

A change waits for debounce_ms of quiet, so a lone create is applied at once. More than
SMALL_BATCH changes pending at once (changes that arrived while the previous apply ran,
or during this wait: a script or a bulk job, not a person) mean a burst: then quiet
means no change for BURST_QUIET_S (gaps inside a busy burst are often longer than
debounce_ms), and the wait is bounded by the burst window, which grows (2, 10, 50,
60 s) for as long as bursts keep hitting it and falls back to BURST_WINDOW_S once a
wait ends in quiet. So 1,000 creates give a handful of applies, the end of any burst is
applied about BURST_QUIET_S after its last change, and a client creating one agent
after another with ?wait=applied is never taken for a burst.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

SMALL_BATCH = 1
BURST_QUIET_S = 1.0
BURST_WINDOW_S = 2.0
BURST_GROWTH = 5.0
BURST_WINDOW_MAX_S = 60.0


class Coalescer:
    """Counts changes, wakes the loop, and debounces."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.changes = 0
        self.changes_applied = 0
        self.window = BURST_WINDOW_S

    def changed(self) -> None:
        self.changes += 1
        self.wake.set()

    async def debounce(self, debounce_s: float, stopping: Callable[[], bool]) -> None:
        """Wait until the changes stop, at most the burst window; grow the window if it
        was hit, reset it otherwise."""
        debounce = max(0.0, debounce_s)
        window = self.window
        start = time.monotonic()
        capped = False
        while not stopping():
            self.wake.clear()
            if debounce == 0:
                break
            left = start + window - time.monotonic()
            if left <= 0:
                capped = True
                break
            burst = self.changes - self.changes_applied > SMALL_BATCH
            quiet = max(debounce, BURST_QUIET_S) if burst else debounce
            try:
                await asyncio.wait_for(self.wake.wait(), min(quiet, left))
            except TimeoutError:
                capped = left <= quiet  # the window ran out, not the changes
                break
        log.debug("coalesced %d change(s) in %.2f s (window %.0f s%s)",
                  self.changes - self.changes_applied, time.monotonic() - start, window,
                  ", hit" if capped else "")
        # What the coming apply covers (changes after this point trigger the next one).
        self.changes_applied = self.changes
        self.window = min(BURST_WINDOW_MAX_S, window * BURST_GROWTH) if capped else BURST_WINDOW_S
