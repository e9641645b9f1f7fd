"""`sipprov token create|revoke|list`: API tokens for the HTTP API.

The token is printed once, on stdout alone (so `TOKEN=$(sipprov token create ...)`
works); only its hash is stored, so a lost token is revoked and replaced, not recovered.
"""

from __future__ import annotations

import argparse
import json
import sys

from sipprov.access import tokens
from sipprov.cli.commands.common import cli_actor, open_pool
from sipprov.config import Config
from sipprov.db.transaction import transaction


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="API tokens (create, revoke, list)")
    tsub = p.add_subparsers(dest="token_action", metavar="ACTION", required=True)
    cr = tsub.add_parser("create", help="create a token and print it once")
    cr.add_argument("--name", required=True, help="unique name, e.g. the client's name")
    cr.add_argument("--role", choices=tokens.ROLES, default="readonly",
                    help="admin: everything; readonly: GET only (default)")
    cr.add_argument("--json", action="store_true",
                    help="print {id, name, role, token} as JSON (the token shown once)")
    cr.set_defaults(func=create)
    rv = tsub.add_parser("revoke", help="revoke the active token of that name")
    rv.add_argument("name")
    rv.set_defaults(func=revoke)
    ls = tsub.add_parser("list", help="list tokens (never their secrets)")
    ls.add_argument("--all", action="store_true", help="include revoked tokens")
    ls.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    ls.set_defaults(func=list_)


async def create(cfg: Config, args: argparse.Namespace) -> int:
    tokens.validate_name(args.name)
    async with open_pool(cfg) as pool:
        async with transaction(pool) as conn:
            info, token = await tokens.create_token(conn, args.name, args.role, cli_actor())
    if args.json:
        print(json.dumps({"id": info.id, "name": info.name, "role": info.role, "token": token}))
        return 0
    print(token)
    print(f"created {info.role} token {info.name!r} (id {info.id}); it is shown only once",
          file=sys.stderr)
    return 0


async def revoke(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        async with transaction(pool) as conn:
            await tokens.revoke_token(conn, args.name, cli_actor())
    print(f"revoked token {args.name!r}", file=sys.stderr)
    return 0


async def list_(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        rows = await tokens.list_tokens(pool, include_revoked=args.all)
    if args.json:
        print(json.dumps({"items": [{"id": t.id, "name": t.name, "role": t.role,
                                     "created_at": t.created_at, "last_used_at": t.last_used_at,
                                     "revoked_at": t.revoked_at} for t in rows]},
                         default=str, indent=2))
        return 0
    print(f"{'ID':>5}  {'NAME':<24} {'ROLE':<9} {'CREATED':<20} {'LAST USED':<20} REVOKED")
    for t in rows:
        print(f"{t.id:>5}  {t.name:<24} {t.role:<9} {_when(t.created_at):<20} "
              f"{_when(t.last_used_at):<20} {_when(t.revoked_at)}")
    return 0


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"  # type: ignore[attr-defined]
