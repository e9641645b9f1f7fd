"""What every sub-command shares: exit codes, error reporting, opening the database."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import inspect
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from sipprov.config import Config
from sipprov.db import database, embedded
from sipprov.errors import ConfirmationRequired, SipprovError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def option_name(field: str) -> str:
    """The CLI's spelling of an API field: `first_name` -> `--first-name`,
    `queues.0.name` -> `--queue`, `password` -> `--password-stdin`."""
    if field.startswith("--"):
        return field
    head = field.split(".", 1)[0]
    special = {"queues": "--queue", "password": "--password-stdin",
               "sip_password": "--sip-password-stdin"}
    return special.get(head, "--" + head.replace("_", "-"))


def cli_message(message: str, field: str | None) -> str:
    """A service error in the CLI's words: the field named as the option that sets it."""
    if not field:
        return message
    option = option_name(field)
    prefix = f"{field}: "
    if message.startswith(prefix):
        return f"{option}: {message[len(prefix):]}"
    return f"{message} ({option})"


def cli_actor() -> str:
    """How the audit log names a change made from this command line: `cli:<user>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name (containers): still say where it came from
        return "cli"


def fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"sipprov: {message}", file=sys.stderr)
    return code


def run_command(func: Callable[..., Any], cfg: Config, args: argparse.Namespace) -> int:
    """Run a sync or async command function and map our errors to exit codes."""
    try:
        result = func(cfg, args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except SipprovError as exc:
        message = exc.confirm_with("--force") if isinstance(exc, ConfirmationRequired) else exc.message
        return fail(cli_message(message, exc.field), EXIT_USAGE if exc.status < 500 else EXIT_FAILED)
    except database.DatabaseUnavailable as exc:
        return fail(f"database unavailable: {exc}", EXIT_UNAVAILABLE)
    except embedded.EmbeddedUnavailable as exc:
        return fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return fail("interrupted", 130)


@asynccontextmanager
async def open_pool(cfg: Config) -> AsyncIterator[asyncpg.Pool]:
    """A migrated pool for one CLI command (starts the embedded server when no DSN)."""
    try:
        _, pool = await database.connect_and_upgrade(cfg.database)
    except database.UNAVAILABLE_ERRORS as exc:
        raise database.DatabaseUnavailable(str(exc)) from exc
    try:
        yield pool
    finally:
        await pool.close()
