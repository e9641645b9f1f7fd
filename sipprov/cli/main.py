"""The `sipprov` command: one sub-command per job, each in sipprov/cli/commands/.

Exit codes scripts can trust: 0 done, 1 failed, 2 bad usage or bad input,
3 the database or Asterisk is unavailable.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from sipprov import __version__
from sipprov import config as config_mod
from sipprov.cli.commands import COMMAND_MODULES
from sipprov.cli.commands.common import EXIT_USAGE, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipprov",
        description="Provision contact-centre agents into Asterisk 22.",
    )
    parser.add_argument("--version", action="version", version=f"sipprov {__version__}")
    parser.add_argument(
        "-c", "--config", metavar="FILE",
        help="TOML configuration file (default: $SIPPROV_CONFIG, else built-in defaults)",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show logs (debug level) and runtime warnings on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:  # quiet by default: the result only (-v shows logs and warnings)
        warnings.simplefilter("ignore")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        print(f"sipprov: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_command(args.func, cfg, args)


if __name__ == "__main__":
    sys.exit(main())
