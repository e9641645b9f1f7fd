"""Failed web logins, slowed then refused, per login and per client address.

After `login_free_attempts` failures for a login (4x that for an address) each further
try must wait: 1 s, then 2, 4, ... up to 60 s after the previous failure. After
`login_lockout_attempts` failures (4x for an address) the key is refused for
`login_lockout_s` seconds. A try that comes too early is refused with 429 and
Retry-After, without checking the password, so parallel guessing gains nothing.
Failures are forgotten `login_lockout_s` after the last one; a successful login clears
its login's count (not its address's: an attacker could otherwise reset the address
count with an account of their own).

State is in memory, per process: a restart forgets it, which is acceptable for a
brake on guessing. The clock is injectable so tests need not sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sipprov.config import SecurityConfig
from sipprov.errors import RateLimitedError

ADDRESS_FACTOR = 4
MAX_DELAY_S = 60.0
PRUNE_EVERY = 1000


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


@dataclass(frozen=True)
class _Limits:
    free: int
    lockout: int


class LoginRateLimiter:
    def __init__(self, cfg: SecurityConfig, clock: Callable[[], float] = time.monotonic):
        self._cfg = cfg
        self._clock = clock
        self._keys: dict[tuple[str, str], _Failures] = {}
        self._records = 0
        self._limits = {
            "login": _Limits(cfg.login_free_attempts, cfg.login_lockout_attempts),
            "address": _Limits(cfg.login_free_attempts * ADDRESS_FACTOR,
                               cfg.login_lockout_attempts * ADDRESS_FACTOR),
        }

    @staticmethod
    def _key_list(login: str, address: str | None) -> list[tuple[str, str]]:
        keys = [("login", login.strip().lower()[:256])]
        if address:
            keys.append(("address", address))
        return keys

    def check(self, login: str, address: str | None) -> None:
        """Raise RateLimitedError when a try for this login or address must not happen now."""
        now = self._clock()
        wait = 0.0
        for key in self._key_list(login, address):
            wait = max(wait, self._wait_for(key, now))
        if wait > 0:
            raise RateLimitedError(
                "too many failed logins; try again later", retry_after=wait)

    def _wait_for(self, key: tuple[str, str], now: float) -> float:
        entry = self._keys.get(key)
        if entry is None or self._expired(entry, now):
            return 0.0
        if entry.locked_until > now:
            return entry.locked_until - now
        limits = self._limits[key[0]]
        if entry.count < limits.free:
            return 0.0
        delay = min(MAX_DELAY_S, 2.0 ** (entry.count - limits.free))
        return max(0.0, entry.last + delay - now)

    def _expired(self, entry: _Failures, now: float) -> bool:
        return now >= entry.locked_until and now - entry.last >= self._cfg.login_lockout_s

    def failure(self, login: str, address: str | None) -> None:
        now = self._clock()
        for key in self._key_list(login, address):
            entry = self._keys.get(key)
            if entry is None or self._expired(entry, now):
                entry = self._keys[key] = _Failures()
            entry.count += 1
            entry.last = now
            if entry.count >= self._limits[key[0]].lockout:
                entry.locked_until = now + self._cfg.login_lockout_s
        self._records += 1
        if self._records % PRUNE_EVERY == 0:
            self.prune()

    def success(self, login: str) -> None:
        self._keys.pop(("login", login.strip().lower()[:256]), None)

    def prune(self) -> None:
        """Drop forgotten entries so memory follows the attack, not its history."""
        now = self._clock()
        for key in [k for k, e in self._keys.items() if self._expired(e, now)]:
            del self._keys[key]

    def __len__(self) -> int:
        return len(self._keys)
