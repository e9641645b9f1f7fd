"""`sipprov audit`: read the audit log, newest first (filters as GET /api/v1/audit)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime

from sipprov import audit
from sipprov.agents import service as agents
from sipprov.cli.commands.common import EXIT_OK, open_pool
from sipprov.config import Config
from sipprov.errors import ValidationError


def _time(option: str) -> Callable[[str], datetime]:
    """An argparse type for an ISO 8601 time, naming the option when it is wrong."""
    def parse(raw: str) -> datetime:
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option}: not an ISO 8601 time (2026-11-29T10:00Z)") from None
        if value.tzinfo is None:
            value = value.astimezone()  # the local time zone, as people type it
        return value
    return parse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="read the audit log (who changed what, when)",
                       description=__doc__)
    p.add_argument("--agent", metavar="AGENT", help="changes of this agent (id, login or e-mail)")
    p.add_argument("--entity", help="agent, queue, role, department, account_type, token")
    p.add_argument("--entity-id", metavar="ID", help="with --entity: one record")
    p.add_argument("--actor", help="who made the change (token:NAME, cli:USER, web:LOGIN)")
    p.add_argument("--since", type=_time("--since"), metavar="TIME",
                   help="at or after this time (ISO 8601; local time without a zone)")
    p.add_argument("--until", type=_time("--until"), metavar="TIME", help="before this time")
    p.add_argument("--limit", type=int, default=50, help="entries per page (default 50, max 500)")
    p.add_argument("--cursor", help="the next page (printed after a page)")
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    p.set_defaults(func=show)


async def show(cfg: Config, args: argparse.Namespace) -> int:
    entity, entity_id = args.entity, args.entity_id
    async with open_pool(cfg) as pool:
        if args.agent is not None:
            if entity not in (None, "agent") or entity_id is not None:
                raise ValidationError("give either --agent or --entity/--entity-id", "--agent")
            found = (await agents.get_agent(pool, int(args.agent)) if args.agent.isdecimal()
                     else await agents.find_agent(pool, args.agent))
            if found is None:
                raise ValidationError(f"no agent {args.agent}", "--agent")
            entity, entity_id = "agent", found.id
        try:
            page = await audit.page(pool, entity=entity, entity_id=entity_id, actor=args.actor,
                                    since=args.since, until=args.until, cursor=args.cursor,
                                    limit=args.limit)
        except ValidationError as exc:  # speak the CLI's option names
            raise ValidationError(exc.message.replace(f"{exc.field}:", f"--{exc.field}:", 1),
                                  f"--{exc.field}") from None
    if args.json:
        print(json.dumps(page.to_dict(), ensure_ascii=False, indent=2))
        return EXIT_OK
    for e in page.items:
        details = json.dumps(e.details, ensure_ascii=False, sort_keys=True)
        print(f"{e.at:%Y-%m-%d %H:%M:%S%z}  {e.actor:<20} {e.action:<20} "
              f"{e.entity}:{e.entity_id or '-'}  {details}")
    if page.next:
        print(f"next page: --cursor {page.next}")
    return EXIT_OK
