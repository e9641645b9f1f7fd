"""Map PostgreSQL unique violations of our schema to ConflictErrors naming the field.

The database is the arbiter of uniqueness (a pre-check in Python would race); this
turns its answer into the same error the API and the CLI show for a taken value.
"""

from __future__ import annotations

import asyncpg

from sipprov.errors import N_, ConflictError

# constraint/index name -> (field, what); `what` is a catalog message (the console
# translates the reason, docs/i18n.md)
UNIQUE_FIELDS: dict[str, tuple[str, str]] = {
    "users_login_key": ("login", N_("login")),
    "users_email_key": ("email", N_("e-mail address")),
    "users_extension_key": ("extension", N_("extension")),
    "queues_name_key": ("name", N_("queue name")),
    "queues_number_key": ("number", N_("queue number")),
    "roles_name_key": ("name", N_("role name")),
    "departments_name_key": ("name", N_("department name")),
    "account_types_name_key": ("name", N_("account type name")),
    "queue_members_pkey": ("agent_id", N_("queue membership")),
}


def conflict_from(exc: asyncpg.UniqueViolationError, value: object | None = None) -> ConflictError:
    return taken(exc.constraint_name, value)


def taken(constraint_name: str | None, value: object | None = None) -> ConflictError:
    """The error for a value that the unique constraint `constraint_name` holds already
    (also for a pre-check that knows it without asking the database, e.g. bulk import)."""
    field, what = UNIQUE_FIELDS.get(constraint_name or "", ("", N_("value")))
    code = f"{field}_taken" if field else "conflict"
    if value is None:
        return ConflictError.because(field or None, N_("this %(what)s is already taken"),
                                     code=code, what=what)
    return ConflictError.because(field or None, N_("this %(what)s %(value)s is already taken"),
                                 code=code, what=what, value=value)
