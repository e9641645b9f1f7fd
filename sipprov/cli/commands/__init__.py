"""Sub-commands of `sipprov`; each module has `register(subparsers)`."""

from sipprov.cli.commands import (
    agents,
    asterisk,
    auditlog,
    db,
    directory,
    pbx,
    render,
    serve,
    status,
    tokens,
)

COMMAND_MODULES = [serve, agents, directory, tokens, auditlog, render, db, pbx, asterisk,
                   status]
