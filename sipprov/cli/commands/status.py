"""`sipprov status`: the config version and every Asterisk node (reachable, applied
version, registered phones, last error). Exit 1 when a node is unreachable."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sipprov.apply import nodestatus
from sipprov.cli.commands.common import EXIT_FAILED, EXIT_OK, open_pool
from sipprov.config import Config
from sipprov.db.sql import config_state


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="config version and every Asterisk node")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(func=status)


def _line(n: dict[str, Any]) -> str:
    state = {True: "reachable", False: "unreachable", None: "unknown"}[n["reachable"]]
    registered = "-" if n["registered"] is None else str(n["registered"])
    parts = [f"{n['name']:<16} {state:<11} applied {n['applied_version']:<6} "
             f"registered {registered:<5}"]
    if n["site"]:
        parts.append(f"site {n['site']}")
    if n["last_error"]:
        parts.append(f"error: {n['last_error']}")
    return "  ".join(parts).rstrip()


async def status(cfg: Config, args: argparse.Namespace) -> int:
    probed = await nodestatus.probe_all(cfg)
    async with open_pool(cfg) as pool:
        state = await config_state.read(pool)
        nodes = await nodestatus.report(cfg, pool, probed=probed)
    if args.json:
        print(json.dumps({"config": {"version": state.version,
                                     "applied_version": state.applied_version,
                                     "pending": state.pending},
                          "nodes": nodes}, indent=2))
    else:
        print(f"config version {state.version}, applied {state.applied_version} "
              f"({state.pending} pending)")
        for n in nodes:
            print(_line(n))
        if any(not p.reachable for p in probed.values()):
            print("an unreachable node keeps the version it has and catches up once its "
                  "AMI answers: is Asterisk running there, and do asterisk.ami_* match its "
                  "manager.conf? (development PBX: sipprov pbx up)")
    return EXIT_OK if all(p.reachable for p in probed.values()) else EXIT_FAILED
