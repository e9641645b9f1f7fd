"""A thread of the applier's own for render and file writes.

The default executor may be queued full of password hashes during a bulk create: an
apply must not wait behind them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class Worker:
    """One lazily started thread; shutdown() when the applier stops."""

    def __init__(self, name: str = "sipprov-applier") -> None:
        self._name = name
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(fn, *args))

    def shutdown(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)
