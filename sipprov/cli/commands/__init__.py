"""Sub-commands of `sipprov`; each module has `register(subparsers)`."""

from sipprov.cli.commands import agents, db, pbx, render, serve, tokens

COMMAND_MODULES = [serve, agents, tokens, render, db, pbx]
