"""`sipprov render --out DIR | --diff` and `sipprov apply`: look before you push, or push now."""

from __future__ import annotations

import argparse
import json
import sys

from sipprov.cli.commands.common import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, fail
from sipprov.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render the Asterisk files without applying them")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", metavar="DIR", help="write the rendered files into DIR")
    mode.add_argument("--diff", action="store_true",
                      help="show what would change against the files on disk (exit 1 if any)")
    p.set_defaults(func=render)

    a = sub.add_parser("apply", help="render, write, reload Asterisk and verify, now")
    a.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="give up after S seconds (default 60)")
    a.add_argument("--json", action="store_true", help="print the applier status as JSON")
    a.set_defaults(func=apply)


async def render(cfg: Config, args: argparse.Namespace) -> int:
    from sipprov.cli.renderops import render_diff, render_to_dir

    if args.out:
        names = await render_to_dir(cfg, args.out)
        for name in names:
            print(f"wrote {args.out.rstrip('/')}/{name}")
        if not names:
            print("nothing changed")
        return EXIT_OK
    diff = await render_diff(cfg)
    sys.stdout.write(diff)
    return EXIT_FAILED if diff else EXIT_OK


async def apply(cfg: Config, args: argparse.Namespace) -> int:
    from sipprov.cli.renderops import apply_now

    result = await apply_now(cfg, args.timeout)
    if args.json:
        print(json.dumps(result, default=str, indent=2))
    if result.get("ok"):
        if not args.json:
            print(f"applied config version {result.get('applied_version')}")
        return EXIT_OK
    error = str(result.get("error") or "apply failed")
    unavailable = not result.get("ami_connected")
    return fail(error, EXIT_UNAVAILABLE if unavailable else EXIT_FAILED)
