"""`sipprov asterisk realtime-config`: what an operator's own Asterisk needs for the
realtime backend (extconfig.conf, res_pgsql.conf, sorcery.conf, modules.conf lines),
with the connection settings of the read-only role Asterisk logs in as.

The role's password is shown only with --show-password (it may end up in a terminal
scroll-back or a ticket otherwise).
"""

from __future__ import annotations

import argparse
import asyncio

from sipprov.apply import realtimeconf
from sipprov.cli.commands.common import EXIT_USAGE, fail
from sipprov.config import Config
from sipprov.db import database


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("asterisk", help="what your own Asterisk needs")
    asub = p.add_subparsers(dest="asterisk_action", metavar="ACTION", required=True)
    rc = asub.add_parser("realtime-config",
                         help="print the Asterisk config lines of the realtime backend")
    rc.add_argument("--show-password", action="store_true",
                    help="print the role's password instead of <password>")
    rc.add_argument("--files-too", action="store_true",
                    help="map pjsip.conf's objects first too (switch backends without "
                         "an Asterisk restart, as the development PBX does)")
    rc.add_argument("--node", metavar="NAME",
                    help="for this [[asterisk.nodes]] node (its site's dbappname)")
    rc.set_defaults(func=realtime_config)


async def realtime_config(cfg: Config, args: argparse.Namespace) -> int:
    dsn = cfg.database.dsn or await asyncio.to_thread(database.resolve_dsn, cfg.database)
    password = realtimeconf.db_password(cfg)
    link = realtimeconf.db_link(cfg, dsn, password)
    site = None
    if args.node is not None:
        node = next((n for n in cfg.nodes if n.name == args.node), None)
        if node is None:
            return fail(f"--node: no node {args.node!r} in asterisk.nodes "
                        f"({', '.join(n.name for n in cfg.nodes)})", EXIT_USAGE)
        site = node.site
    print(realtimeconf.operator_config(cfg, link, show_password=args.show_password,
                                       with_files=args.files_too, site=site), end="")
    return 0
