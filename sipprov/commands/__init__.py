"""Sub-commands of `sipprov`; each module has `register(subparsers)`."""

from . import agents, db, pbx, serve, tokens

COMMAND_MODULES = [serve, agents, tokens, db, pbx]
