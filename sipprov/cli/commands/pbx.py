"""`sipprov pbx up|down|status|build|front-up|front-down|front-status`: the managed
development PBX and its SIP front."""

from __future__ import annotations

import argparse

from sipprov.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pbx", help="the development PBX (Asterisk 22 in a Debian-unstable root)")
    p.add_argument("action", choices=["up", "down", "status", "build", "front-up",
                                      "front-down", "front-status"],
                   help="build: make the root; up: build if needed and start; down: stop;"
                        " front-*: Kamailio in front of the nodes (pbx.front_port)")
    p.set_defaults(func=run)


def run(cfg: Config, args: argparse.Namespace) -> int:
    from sipprov.pbx import pbx_main

    return pbx_main(cfg, args.action)
