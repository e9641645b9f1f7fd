"""Sub-commands of `sipprov`; each module has `register(subparsers)`."""

from . import db, pbx, serve

COMMAND_MODULES = [serve, db, pbx]
