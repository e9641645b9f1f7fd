"""The extension pool against the real PostgreSQL: sync, allocation, concurrency."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from sipprov.agents import extensions
from sipprov.config import Config, ExtensionsConfig
from sipprov.errors import ConflictError, ValidationError


async def pool_rows(conn: asyncpg.Connection | asyncpg.Pool) -> dict[int, tuple[bool, str | None]]:
    rows = await conn.fetch("SELECT number, reserved, owner FROM extension_pool ORDER BY number")
    return {r["number"]: (r["reserved"], r["owner"]) for r in rows}


async def test_sync_pool_is_idempotent_and_follows_the_config(pool: asyncpg.Pool) -> None:
    ext = ExtensionsConfig(first=100, last=199, reserved=[100, 150, 5000])
    async with pool.acquire() as conn:
        first = await extensions.sync_pool(conn, ext)
        assert first.changed == 100
        again = await extensions.sync_pool(conn, ext)
        assert (again.changed, again.deleted) == (0, 0)
        rows = await pool_rows(conn)
        assert sorted(rows) == list(range(100, 200))
        assert {n for n, (reserved, _) in rows.items() if reserved} == {100, 150}

        # Narrow the range while 190 is owned: free numbers go, the owned one stays.
        async with conn.transaction():
            await extensions.allocate_exact(conn, ext, 190, "user:1")
        narrower = ExtensionsConfig(first=100, last=149, reserved=[101])
        result = await extensions.sync_pool(conn, narrower)
        assert result.deleted == 49
        assert result.owned_outside_range == 1
        rows = await pool_rows(conn)
        assert sorted(rows) == list(range(100, 150)) + [190]
        assert {n for n, (reserved, _) in rows.items() if reserved} == {101}
        # The leftover number is never handed out again.
        async with conn.transaction():
            await extensions.release(conn, 190, "user:1")
        async with conn.transaction():
            with pytest.raises(ValidationError):
                await extensions.allocate_exact(conn, narrower, 190, "user:2")


async def test_sync_pool_of_90000_numbers_is_fast(pool: asyncpg.Pool) -> None:
    ext = ExtensionsConfig(first=10000, last=99999, reserved=list(range(10000, 10100)))
    async with pool.acquire() as conn:
        t0 = time.perf_counter()
        result = await extensions.sync_pool(conn, ext)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        await extensions.sync_pool(conn, ext)
        second = time.perf_counter() - t0
        assert result.changed == 90000
        assert await conn.fetchval("SELECT count(*) FROM extension_pool WHERE reserved") == 100
    print(f"sync 90,000 numbers: {first:.2f} s, again: {second:.2f} s")
    assert first < 10 and second < 10


async def test_allocation_rules(pool: asyncpg.Pool) -> None:
    ext = ExtensionsConfig(first=100, last=104, reserved=[100, 102])
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, ext)
        async with conn.transaction():
            assert await extensions.allocate(conn, ext, "user:1") == 101  # 100 reserved
            assert await extensions.allocate(conn, ext, "user:2") == 103  # 102 reserved
            assert await extensions.allocate_exact(conn, ext, 104, "user:3") == 104
        async with conn.transaction():
            with pytest.raises(ConflictError) as exc:
                await extensions.allocate(conn, ext, "user:4")
            assert exc.value.code == "extension_pool_exhausted"
            assert exc.value.field == "extension"

        cases = [
            (99, ValidationError, "outside the configured range 100-104"),
            (105, ValidationError, "outside the configured range"),
            (100, ValidationError, "reserved"),
            (103, ConflictError, "already in use"),
        ]
        for number, error, text in cases:
            async with conn.transaction():
                with pytest.raises(error) as exc:
                    await extensions.allocate_exact(conn, ext, number, "user:9")
                assert exc.value.field == "extension"
                assert text in exc.value.message
        async with conn.transaction():
            with pytest.raises(ConflictError) as exc:
                await extensions.allocate_exact(conn, ext, 103, "queue:1", field="number")
            assert (exc.value.field, exc.value.code) == ("number", "number_taken")

        async with conn.transaction():
            await extensions.release(conn, 103, "user:2")
            await extensions.release(conn, 101, "user:someone-else")  # not the owner: no-op
        rows = await pool_rows(conn)
        assert rows[103] == (False, None)
        assert rows[101] == (False, "user:1")


async def test_rollback_gives_the_number_back(pool: asyncpg.Pool) -> None:
    ext = ExtensionsConfig(first=100, last=110)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, ext)
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                assert await extensions.allocate(conn, ext, "user:1") == 100
                raise RuntimeError("boom")
        async with conn.transaction():
            assert await extensions.allocate(conn, ext, "user:2") == 100


async def test_concurrent_allocations_never_collide(cfg: Config) -> None:
    # The race, not the cooldown (tested below): a freed number is claimable at once here.
    ext = ExtensionsConfig(first=100, last=399, cooldown_s=0)
    pool = await asyncpg.create_pool(cfg.database.dsn, min_size=20, max_size=20)
    try:
        async with pool.acquire() as conn:
            await extensions.sync_pool(conn, ext)

        async def one(i: int) -> int:
            async with pool.acquire() as conn:
                async with conn.transaction():
                    number = await extensions.allocate(conn, ext, f"user:{i}")
                    await asyncio.sleep(0.001)  # hold the lock a moment: force overlap
                    return number

        numbers = await asyncio.gather(*(one(i) for i in range(300)))
        assert sorted(numbers) == list(range(100, 400))

        # Free 250, then many claims of it at once: exactly one wins.
        async with pool.acquire() as conn:
            owner = await conn.fetchval("SELECT owner FROM extension_pool WHERE number = 250")
            async with conn.transaction():
                await extensions.release(conn, 250, owner)

        async def claim(i: int) -> str:
            async with pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        await extensions.allocate_exact(conn, ext, 250, f"queue:{i}")
                        await asyncio.sleep(0.005)
                    return "won"
                except ConflictError:
                    return "taken"

        results = await asyncio.gather(*(claim(i) for i in range(20)))
        assert results.count("won") == 1 and results.count("taken") == 19
    finally:
        await pool.close()


async def test_allocate_many(pool: asyncpg.Pool) -> None:
    ext = ExtensionsConfig(first=100, last=199, reserved=[101])
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, ext)
        async with conn.transaction():
            await extensions.allocate_exact(conn, ext, 103, "user:0")
            owners = [f"user:{i}" for i in range(1, 6)]
            got = await extensions.allocate_many(conn, ext, owners)
        # In the owners' order, lowest free first, skipping reserved and taken numbers.
        assert [got[o] for o in owners] == [100, 102, 104, 105, 106]
        assert await extensions.allocate_many(conn, ext, []) == {}
        with pytest.raises(ValueError):
            await extensions.allocate_many(conn, ext, ["user:7", "user:7"])

        before = await pool_rows(conn)
        with pytest.raises(ConflictError) as exc:
            async with conn.transaction():
                await extensions.allocate_many(conn, ext, [f"user:{i}" for i in range(100, 200)])
        assert exc.value.code == "extension_pool_exhausted"
        assert await pool_rows(conn) == before  # all or nothing


async def test_allocate_many_is_one_fast_statement(pool: asyncpg.Pool) -> None:
    ext = ExtensionsConfig(first=10000, last=99999)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, ext)
        t0 = time.perf_counter()
        async with conn.transaction():
            got = await extensions.allocate_many(conn, ext, [f"user:{i}" for i in range(10000)])
        elapsed = time.perf_counter() - t0
    assert sorted(got.values()) == list(range(10000, 20000))
    print(f"allocate_many 10,000: {elapsed * 1000:.0f} ms")
    assert elapsed < 5


# --- cooldown: a released number rests before anyone else gets it --------------------


async def _released_at(pool: asyncpg.Pool, number: int) -> object:
    return await pool.fetchval("SELECT released_at FROM extension_pool WHERE number = $1", number)


async def _age_release(pool: asyncpg.Pool, number: int, seconds: float) -> None:
    """Pretend the number was released `seconds` ago (instead of waiting that long)."""
    await pool.execute(
        "UPDATE extension_pool SET released_at = now() - make_interval(secs => $2::double precision)"
        " WHERE number = $1", number, seconds)


async def test_released_number_rests_for_the_cooldown(pool: asyncpg.Pool) -> None:
    ext = ExtensionsConfig(first=100, last=104, cooldown_s=3600)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, ext)
        async with conn.transaction():
            assert await extensions.allocate(conn, ext, "user:1") == 100
            await extensions.release(conn, 100, "user:1")
        assert await _released_at(pool, 100) is not None
        # The lowest free number is skipped while it rests; so is a bulk allocation.
        async with conn.transaction():
            assert await extensions.allocate(conn, ext, "user:2") == 101
            got = await extensions.allocate_many(conn, ext, ["user:3", "user:4"])
            assert sorted(got.values()) == [102, 103]
        # Asked for by number: 409 naming the field and when it becomes free.
        with pytest.raises(ConflictError) as refused:
            async with conn.transaction():
                await extensions.allocate_exact(conn, ext, 100, "user:5")
        assert refused.value.code == "extension_cooling_down"
        assert refused.value.field == "extension"
        assert "held back until" in refused.value.message
        # The owner that let it go may take it back (it is their own phone).
        async with conn.transaction():
            assert await extensions.allocate_exact(conn, ext, 100, "user:1") == 100
            await extensions.release(conn, 100, "user:1")
        stats = await conn.fetchrow(
            "SELECT * FROM extension_pool WHERE number = 100")
        assert stats["owner"] is None and stats["released_owner"] == "user:1"
        # Once the cooldown has passed, it is an ordinary free number again.
        await _age_release(pool, 100, 3601)
        async with conn.transaction():
            assert await extensions.allocate(conn, ext, "user:6") == 100


async def test_cooldown_zero_and_numbers_that_never_reached_a_phone(pool: asyncpg.Pool) -> None:
    off = ExtensionsConfig(first=100, last=104, cooldown_s=0)
    on = ExtensionsConfig(first=100, last=104, cooldown_s=3600)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, off)
        async with conn.transaction():
            await extensions.allocate_exact(conn, off, 100, "user:1")
            await extensions.release(conn, 100, "user:1")
            assert await extensions.allocate(conn, off, "user:2") == 100  # no hold at 0
        # hold=False: claimed and given back in one failing create, never on a phone.
        async with conn.transaction():
            assert await extensions.allocate(conn, on, "user:3") == 101
            await extensions.release(conn, 101, "user:3", hold=False)
            assert await extensions.allocate(conn, on, "user:4") == 101


def test_six_digit_numbers_are_accepted_seven_are_not() -> None:
    """100,000 agents need 6-digit numbers (the benchmarks run them)."""
    from sipprov.apply import phones

    ExtensionsConfig(first=100000, last=999999)
    with pytest.raises(ValueError):
        ExtensionsConfig(first=100000, last=1000000)
    assert phones._EXT.match("123456") and not phones._EXT.match("1234567")
    assert phones._CHANNEL.match("PJSIP/123456-0000001a")
