"""What a create would derive, before it happens: the add-agent form's live preview.

Read-only and advisory (nothing is reserved): the login a create would choose now
(`jan.kowalski2` when `jan.kowalski` is taken), the default caller id and chat name, and
the extension the pool would hand out next - the same rules as agents.service.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from sipprov.agents import naming, validation
from sipprov.agents import rules as agentrules
from sipprov.config import Config
from sipprov.db.sql import agents as sql
from sipprov.db.sql import extensions as ext_sql


@dataclass(frozen=True)
class Preview:
    login: str | None
    login_taken: bool
    caller_id: str | None
    chat_name: str | None
    extension: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def preview_create(pool: asyncpg.Pool, cfg: Config, first_name: str, last_name: str,
                         login: str | None = None, extension: int | None = None) -> Preview:
    first, last = first_name.strip()[:100], last_name.strip()[:100]
    chosen: str | None = None
    taken = False
    if login:
        chosen = login.strip().lower()[:validation.LOGIN_MAX]
        taken = chosen in await sql.logins_like(pool, chosen)
    elif first or last:
        try:
            base = naming.derive_login(first, last)
        except validation.Refused:  # no Latin letters: the admin must give a login
            base = None
        if base:
            chosen = naming.first_free_login(base, set(await sql.logins_like(pool, base)))
    caller = agentrules.default_caller_id(first, last, chosen or "") or None
    chat = naming.default_chat_name(first, last).strip() or None
    if extension is None:
        extension = await ext_sql.peek_lowest(pool, cfg.extensions.first, cfg.extensions.last,
                                                cfg.extensions.cooldown_s)
    return Preview(login=chosen, login_taken=taken, caller_id=caller, chat_name=chat,
                   extension=extension)
