"""Map PostgreSQL unique violations of our schema to ConflictErrors naming the field.

The database is the arbiter of uniqueness (a pre-check in Python would race); this
turns its answer into the same error the API and the CLI show for a taken value.
"""

from __future__ import annotations

import asyncpg

from sipprov.errors import ConflictError

# constraint/index name -> (field, what)
UNIQUE_FIELDS: dict[str, tuple[str, str]] = {
    "users_login_key": ("login", "login"),
    "users_email_key": ("email", "e-mail address"),
    "users_extension_key": ("extension", "extension"),
    "queues_name_key": ("name", "queue name"),
    "queues_number_key": ("number", "queue number"),
    "roles_name_key": ("name", "role name"),
    "departments_name_key": ("name", "department name"),
    "account_types_name_key": ("name", "account type name"),
    "queue_members_pkey": ("agent_id", "queue membership"),
}


def conflict_from(exc: asyncpg.UniqueViolationError, value: object | None = None) -> ConflictError:
    return taken(exc.constraint_name, value)


def taken(constraint_name: str | None, value: object | None = None) -> ConflictError:
    """The error for a value that the unique constraint `constraint_name` holds already
    (also for a pre-check that knows it without asking the database, e.g. bulk import)."""
    field, what = UNIQUE_FIELDS.get(constraint_name or "", ("", "value"))
    shown = f" {value}" if value is not None else ""
    return ConflictError(
        f"{field + ': ' if field else ''}this {what}{shown} is already taken",
        field or None,
        f"{field}_taken" if field else "conflict",
    )
