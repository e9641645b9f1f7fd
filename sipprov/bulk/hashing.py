"""Web password hashes for a bulk import, computed after the agents are live.

argon2 costs ~30 ms of CPU per password by design (passwords.py); 10,000 of them are
minutes even on every core, while the same agents' SIP accounts (cheap digests) are
committed and applied in seconds. So the import stores its new users with no web hash
(a web login with no hash is refused, like a wrong password) and this module hashes
the passwords afterwards in a process pool (argon2 holds the GIL for part of its work;
processes use every core) and stores them in batches, each only where no hash was set
meanwhile (an admin's later change wins).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import asyncpg

from sipprov.agents import passwords
from sipprov.db.sql import bulk as sql

CHUNK = 25
# Below this many, the pool's start-up costs more than it saves.
INLINE_MAX = 8


@dataclass(frozen=True)
class HashResult:
    stored: int
    # Users that got a hash from someone else meanwhile (ours was not stored).
    skipped: int


def _hash_chunk(plaintexts: Sequence[str], scheme: str) -> list[str]:
    """Runs in a worker process (the passwords travel over its pipe, never to disk)."""
    return [passwords.hash_web_password_sync(p, scheme) for p in plaintexts]


def default_workers() -> int:
    """The cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


async def hash_and_store(
    pool: asyncpg.Pool,
    items: Sequence[tuple[int, str]],
    scheme: str,
    *,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> HashResult:
    """Hash (user id, password) pairs on `workers` processes and store each batch as it
    completes. Returns how many were stored; raises if hashing or storing fails (the
    users not yet stored keep no web password)."""
    if not items:
        return HashResult(0, 0)
    chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
    stored = 0

    async def store(chunk: Sequence[tuple[int, str]], hashes: list[str]) -> None:
        nonlocal stored
        stored += await sql.set_web_hashes(pool, [uid for uid, _ in chunk], hashes)
        if on_progress:
            on_progress(len(chunk))

    if len(items) <= INLINE_MAX:
        for chunk in chunks:
            hashes = [await passwords.hash_web_password(pw, scheme) for _, pw in chunk]
            await store(chunk, hashes)
        return HashResult(stored, len(items) - stored)

    loop = asyncio.get_running_loop()
    n = workers or default_workers()
    # spawn: the workers do not inherit the event loop, open sockets or threads.
    executor = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))

    async def run(chunk: Sequence[tuple[int, str]]) -> tuple[Sequence[tuple[int, str]], list[str]]:
        hashes = await loop.run_in_executor(executor, _hash_chunk, [pw for _, pw in chunk], scheme)
        return chunk, hashes

    tasks = [asyncio.ensure_future(run(chunk)) for chunk in chunks]
    try:
        for next_done in asyncio.as_completed(tasks):
            chunk, hashes = await next_done
            await store(chunk, hashes)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
    return HashResult(stored, len(items) - stored)
