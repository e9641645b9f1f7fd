"""Sub-commands of `sipprov`; each module has `register(subparsers)`."""

from . import agents, db, pbx, serve

COMMAND_MODULES = [serve, db, pbx, agents]
