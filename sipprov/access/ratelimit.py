"""Failed web logins, slowed then refused, per login and per client address.

After `login_free_attempts` failures for a login (4x that for an address) each further
try must wait: 1 s, then 2, 4, ... up to 60 s after the previous failure. After
`login_lockout_attempts` failures (4x for an address) the key is refused for
`login_lockout_s` seconds. A try that comes too early is refused with 429 and
Retry-After, without checking the password, so parallel guessing gains nothing.
Failures are forgotten `login_lockout_s` after the last one; a successful login clears
its login's count (not its address's: an attacker could otherwise reset the address
count with an account of their own).

The counts live in PostgreSQL (login_failures, migration 014), so they hold across
several service instances and restarts; a failure is counted by one atomic upsert, so
two instances counting the same key lose nothing. Keys are stored as sha256 digests.
Times come from the database's clock unless a clock is injected (tests need not sleep).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from sipprov.config import SecurityConfig
from sipprov.db.sql import login_failures as sql
from sipprov.errors import RateLimitedError

ADDRESS_FACTOR = 4
MAX_DELAY_S = 60.0
PRUNE_EVERY = 1000


@dataclass(frozen=True)
class _Limits:
    free: int
    lockout: int


def _digest(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


class LoginRateLimiter:
    def __init__(self, cfg: SecurityConfig, pool: asyncpg.Pool,
                 clock: Callable[[], float] | None = None):
        self._cfg = cfg
        self._pool = pool
        self._clock = clock
        self._records = 0
        self._limits = {
            "login": _Limits(cfg.login_free_attempts, cfg.login_lockout_attempts),
            "address": _Limits(cfg.login_free_attempts * ADDRESS_FACTOR,
                               cfg.login_lockout_attempts * ADDRESS_FACTOR),
        }

    @staticmethod
    def _key_list(login: str, address: str | None) -> list[tuple[str, str]]:
        keys = [("login", _digest("login", login.strip().lower()[:256]))]
        if address:
            keys.append(("address", _digest("address", address)))
        return keys

    def _now(self) -> float | None:
        return self._clock() if self._clock is not None else None

    async def check(self, login: str, address: str | None) -> None:
        """Raise RateLimitedError when a try for this login or address must not happen now."""
        keys = self._key_list(login, address)
        rows = await self._pool.fetch(sql.READ, self._now(), float(self._cfg.login_lockout_s),
                                      [k for k, _ in keys], [v for _, v in keys])
        wait = 0.0
        for row in rows:
            if row["kind"] is not None:
                wait = max(wait, self._wait_for(row["kind"], row["failures"], row["last_at"],
                                                row["locked_until"], row["now"]))
        if wait > 0:
            raise RateLimitedError(
                "too many failed logins; try again later", retry_after=wait)

    def _wait_for(self, kind: str, failures: int, last: float, locked_until: float,
                  now: float) -> float:
        if locked_until > now:
            return locked_until - now
        limits = self._limits[kind]
        if failures < limits.free:
            return 0.0
        delay = min(MAX_DELAY_S, 2.0 ** (failures - limits.free))
        return max(0.0, last + delay - now)

    async def failure(self, login: str, address: str | None) -> None:
        now = self._now()
        async with self._pool.acquire() as conn, conn.transaction():
            for kind, key in self._key_list(login, address):
                await conn.execute(sql.FAILURE, now, float(self._cfg.login_lockout_s), kind,
                                   key, self._limits[kind].lockout)
        self._records += 1
        if self._records % PRUNE_EVERY == 0:
            await self.prune()

    async def success(self, login: str) -> None:
        await self._pool.execute(sql.SUCCESS, self._key_list(login, None)[0][1])

    async def prune(self) -> None:
        """Drop forgotten rows so the table follows the attack, not its history."""
        await self._pool.execute(sql.PRUNE, self._now(), float(self._cfg.login_lockout_s))

    async def count(self) -> int:
        """How many keys are counted now (forgotten ones included until pruned)."""
        return int(await self._pool.fetchval(sql.COUNT))
