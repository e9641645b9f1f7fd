"""`sipprov serve`: run the service (HTTP API + applier)."""

from __future__ import annotations

import argparse
import dataclasses

from pydantic import ValidationError

from sipprov.cli.commands.common import EXIT_FAILED, EXIT_USAGE, fail
from sipprov.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP API and the applier")
    p.add_argument("--host", help="listen address (default: [http] host)")
    p.add_argument("--port", type=int, help="listen port (default: [http] port)")
    p.set_defaults(func=run)


async def run(cfg: Config, args: argparse.Namespace) -> int:
    from sipprov.server import serve

    changes = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        cfg.http = dataclasses.replace(cfg.http, **changes)
    except ValidationError as exc:
        where = ", ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        return fail(where, EXIT_USAGE)
    try:
        await serve(cfg)
    except OSError as exc:
        return fail(f"cannot listen on {cfg.http.host}:{cfg.http.port}: {exc.strerror or exc}",
                    EXIT_FAILED)
    return 0
