"""Time the steps of every apply the service's applier runs, without changing it.

The applier calls its collaborators through their modules (snapshot_mod.load,
render_mod.render_isolating, files_mod.write_changed, files_mod.keep_good, config_state.
mark_applied) and AMI through its client; wrapping those module attributes and
AmiClient's methods for the duration of a stage gives, per apply, how long each step
took. Applies run one at a time (the applier's mutex), so the steps go to the apply in
progress. Restored on exit.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

from sipprov.apply import ami as ami_mod
from sipprov.apply import applier as applier_mod
from sipprov.apply import files as files_mod
from sipprov.apply import render as render_mod
from sipprov.apply import snapshot as snapshot_mod
from sipprov.apply.connection import ApplyConnection
from sipprov.apply.verify import Verifier
from sipprov.db.sql import config_state

from .machine import cpu_seconds
from .stats import summary


class ApplyTrace:
    def __init__(self) -> None:
        self.applies: list[dict[str, float]] = []
        self._current: dict[str, float] | None = None
        self.t0 = time.perf_counter()

    def _add(self, step: str, seconds: float) -> None:
        if self._current is not None:
            self._current[step] = self._current.get(step, 0.0) + seconds

    def summary(self) -> dict[str, Any]:
        steps: set[str] = set()
        for a in self.applies:
            steps.update(k for k in a if k not in ("start", "end"))
        return {
            "applies": len(self.applies),
            "steps_s": {s: summary((a.get(s, 0.0) for a in self.applies), 4) for s in sorted(steps)},
            # each apply: when it started (s from the start of the stage) and its steps
            "each": [{k: round(v, 3) for k, v in a.items()} for a in self.applies],
        }


def _wrap_async(trace: ApplyTrace, step: Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            trace._add(step(*args, **kwargs), time.perf_counter() - t)
    return wrapper


def _wrap_sync(trace: ApplyTrace, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    # runs in a worker thread (asyncio.to_thread); the apply in progress is still ours
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            trace._add(name, time.perf_counter() - t)
    return wrapper


@contextlib.contextmanager
def traced(asterisk_pid: int | None = None) -> Iterator[ApplyTrace]:
    """Trace the applies run inside the block; with asterisk_pid, also the CPU time
    Asterisk used during each reload (less sensitive to a busy machine than wall time)."""
    trace = ApplyTrace()
    A = applier_mod.Applier
    originals: list[tuple[Any, str, Any]] = []

    def patch(obj: Any, attr: str, new: Any) -> None:
        originals.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, new)

    orig_apply = A._apply_locked

    @functools.wraps(orig_apply)
    async def apply_locked(self: Any, force: bool) -> Any:
        t = time.perf_counter()
        trace._current = {"start": t - trace.t0}
        try:
            return await orig_apply(self, force)
        finally:
            rec = trace._current
            rec["total"] = time.perf_counter() - t
            rec["end"] = time.perf_counter() - trace.t0
            trace.applies.append(rec)
            trace._current = None

    patch(A, "_apply_locked", apply_locked)
    patch(ApplyConnection, "lock",
          _wrap_async(trace, lambda *a, **k: "db_lock", ApplyConnection.lock))
    patch(Verifier, "verify", _wrap_async(trace, lambda *a, **k: "verify", Verifier.verify))
    patch(snapshot_mod.SnapshotLoader, "load",
          _wrap_async(trace, lambda *a, **k: "snapshot", snapshot_mod.SnapshotLoader.load))
    patch(config_state, "mark_applied",
          _wrap_async(trace, lambda *a, **k: "mark_applied", config_state.mark_applied))
    patch(render_mod, "render_isolating",
          _wrap_sync(trace, "render", render_mod.render_isolating))
    patch(files_mod, "write_changed", _wrap_sync(trace, "write_files", files_mod.write_changed))
    patch(files_mod, "keep_good", _wrap_sync(trace, "keep_good", files_mod.keep_good))
    C = ami_mod.AmiClient
    orig_reload = C.reload

    @functools.wraps(orig_reload)
    async def reload(self: Any, module: str, timeout: float | None = None) -> None:
        c0 = cpu_seconds(asterisk_pid)
        t = time.perf_counter()
        try:
            await orig_reload(self, module, timeout)
        finally:
            trace._add(f"reload {module}", time.perf_counter() - t)
            c1 = cpu_seconds(asterisk_pid)
            if c0 is not None and c1 is not None:
                trace._add(f"reload {module} (Asterisk CPU)", c1 - c0)

    patch(C, "reload", reload)
    try:
        yield trace
    finally:
        for obj, attr, old in reversed(originals):
            setattr(obj, attr, old)
