"""What the applier counts and reports in status()."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sipprov.apply import render as render_mod


def now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass
class ApplyStats:
    applies: int = 0
    attempts: int = 0
    failures: int = 0
    last_apply_ms: int | None = None
    last_apply_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_changed: list[str] = field(default_factory=list)
    last_phases_ms: dict[str, int] = field(default_factory=dict)
    reloads: dict[str, int] = field(
        default_factory=lambda: {m: 0 for m in render_mod.MODULE_FOR_FILE.values()}
    )
    # Told of each apply's end: (succeeded, seconds or None) - the /metrics counters.
    listeners: list[Callable[[bool, float | None], None]] = field(default_factory=list)

    def count_reload(self, module: str) -> None:
        self.reloads[module] = self.reloads.get(module, 0) + 1

    def succeeded(self, ms: int, changed: list[str], phases: dict[str, int]) -> None:
        self.applies += 1
        self.last_apply_ms = ms
        self.last_apply_at = now()
        self.last_changed = list(changed)
        self.last_phases_ms = dict(phases)
        self.last_error = None
        self.last_error_at = None
        self._tell(True, ms / 1000)

    def failed(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = now()
        self._tell(False, None)

    def _tell(self, ok: bool, seconds: float | None) -> None:
        for listener in self.listeners:
            listener(ok, seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "applies": self.applies,
            "attempts": self.attempts,
            "failures": self.failures,
            "last_apply_ms": self.last_apply_ms,
            "last_apply_at": iso(self.last_apply_at),
            "last_changed": list(self.last_changed),
            "last_phases_ms": dict(self.last_phases_ms),
            "last_error": self.last_error,
            "last_error_at": iso(self.last_error_at),
            "reloads": dict(self.reloads),
        }
