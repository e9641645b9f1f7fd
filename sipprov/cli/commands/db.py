"""`sipprov db upgrade|status`: the schema migrations, by hand."""

from __future__ import annotations

import argparse

from sipprov.cli.commands.common import open_pool
from sipprov.config import Config
from sipprov.db import database


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database schema")
    dsub = p.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    up = dsub.add_parser("upgrade", help="apply pending migrations (idempotent)")
    up.set_defaults(func=upgrade)
    st = dsub.add_parser("status", help="list applied and pending migrations")
    st.set_defaults(func=status)


async def upgrade(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY 1")
    for row in rows:
        print(f"applied {row['name']}")
    print(f"schema at version {rows[-1]['version'] if rows else 0}")
    return 0


async def status(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        done = {r["version"] for r in await pool.fetch("SELECT version FROM schema_migrations")}
    for mig in database.available_migrations():
        print(f"{'applied' if mig.version in done else 'pending'} {mig.name}")
    return 0
