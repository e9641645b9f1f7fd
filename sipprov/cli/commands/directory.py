"""`sipprov queues|departments|roles|account-types ...`: the lists agents refer to, through
the same services as the HTTP API (same rules, same errors). Quiet: the result only;
`--json` for scripts. Changes that drop data (a queue with members, a department in
use) ask for `--force`, as the API asks for `?force=true`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from pydantic import BaseModel

from sipprov.agents import extensions
from sipprov.agents import service as agents
from sipprov.agents.models import (
    AccountTypeCreate,
    AccountTypeUpdate,
    DepartmentCreate,
    DepartmentUpdate,
    QueueCreate,
    QueueUpdate,
    RoleCreate,
    RoleUpdate,
    parse,
)
from sipprov.apply import wait as applywait
from sipprov.cli.commands.common import EXIT_FAILED, EXIT_OK, cli_actor, fail, open_pool
from sipprov.config import Config
from sipprov.db.transaction import run
from sipprov.directory import lookups, queues
from sipprov.errors import NotFoundError

Printer = Callable[[Any], str]
Change = Callable[[Config, argparse.Namespace], Awaitable[int]]
Fields = Callable[[argparse.Namespace], dict[str, Any]]
Lister = Callable[[asyncpg.Pool], Awaitable[list[Any]]]


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")


def _emit(args: argparse.Namespace, data: Any, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        print("\n".join(lines))


def _bool_option(p: argparse.ArgumentParser, name: str, text: str) -> None:
    p.add_argument(f"--{name.replace('_', '-')}", dest=name, action=argparse.BooleanOptionalAction,
                   default=None, help=text)


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


async def _agent_id(pool: asyncpg.Pool, ref: str) -> int:
    if ref.isdecimal():
        return (await agents.get_agent(pool, int(ref))).id
    found = await agents.find_agent(pool, ref)
    if found is None:
        raise NotFoundError(f"agent {ref} not found", "agent")
    return found.id


async def _wait(pool: asyncpg.Pool, cfg: Config, args: argparse.Namespace, version: int | None) -> int:
    if not getattr(args, "wait", False) or version is None:
        return EXIT_OK
    result = await applywait.wait_applied(pool, cfg, version, args.timeout)
    if result.applied:
        return EXIT_OK
    return fail(f"not applied within {args.timeout:g} s (config version {version} pending): "
                f"{result.error}", EXIT_FAILED)


def _waits(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="return once Asterisk has the change")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds --wait waits")


# --- queues ------------------------------------------------------------------------------


def _queue_line(q: Any) -> str:
    number = "-" if q.number is None else str(q.number)
    label = f"  ({q.label})" if q.label != q.name else ""
    return f"{q.name:<24} {q.kind:<7} {q.strategy:<12} {number:>6}  {q.member_count} members{label}"


def register_queues(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("queues", help="queues and their members")
    s = p.add_subparsers(dest="queues_action", metavar="ACTION", required=True)
    ls = s.add_parser("list", help="list queues")
    ls.add_argument("--kind", choices=["voice", "chat", "ticket"])
    _json_flag(ls)
    ls.set_defaults(func=queue_list)
    sh = s.add_parser("show", help="one queue with its members")
    sh.add_argument("name")
    _json_flag(sh)
    sh.set_defaults(func=queue_show)
    for action, text in (("create", "create a queue"), ("set", "change a queue")):
        c = s.add_parser(action, help=text)
        if action == "create":
            c.add_argument("name", nargs="?", help="Asterisk name (ASCII; default: from --label)")
        else:
            c.add_argument("name")
        c.add_argument("--label", help="display label, any letters (default: the name)")
        if action == "set":
            c.add_argument("--name", dest="new_name", metavar="NAME", help="rename")
            c.add_argument("--no-number", action="store_true", help="remove the number")
        c.add_argument("--kind", choices=["voice", "chat", "ticket"])
        c.add_argument("--strategy")
        c.add_argument("--number", type=str, metavar="N", help="dialplan number (voice queues)")
        c.add_argument("--site", help="served only by the Asterisk nodes of this site")
        if action == "set":
            c.add_argument("--no-site", action="store_true", help="served by every node")
        _json_flag(c)
        _waits(c)
        c.set_defaults(func=queue_create if action == "create" else queue_set)
    dl = s.add_parser("delete", help="delete a queue (with members: --force)")
    dl.add_argument("name")
    dl.add_argument("--force", action="store_true", help="also when it has members")
    _json_flag(dl)
    _waits(dl)
    dl.set_defaults(func=queue_delete)
    ma = s.add_parser("add-member", help="add an agent to a queue, or change its penalty")
    ma.add_argument("name")
    ma.add_argument("agent", metavar="AGENT", help="id, login or e-mail")
    ma.add_argument("--penalty", type=int, help="override (default: priority - 1)")
    _json_flag(ma)
    _waits(ma)
    ma.set_defaults(func=member_add)
    mr = s.add_parser("remove-member", help="remove an agent from a queue")
    mr.add_argument("name")
    mr.add_argument("agent", metavar="AGENT", help="id, login or e-mail")
    _json_flag(mr)
    _waits(mr)
    mr.set_defaults(func=member_remove)


async def queue_list(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        items = await queues.list_queues(pool, args.kind)
    _emit(args, {"items": [q.to_dict() for q in items]}, [_queue_line(q) for q in items])
    return EXIT_OK


async def queue_show(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        q = await queues.get_queue(pool, args.name)
    lines = [_queue_line(q)] + [f"  {m.login:<28} penalty {m.penalty}"
                                for m in q.members or []]
    _emit(args, q.to_dict(), lines)
    return EXIT_OK


async def _sync_extensions(pool: asyncpg.Pool, cfg: Config) -> None:
    """The extension pool as the configuration says (as `sipprov serve` does at start):
    a queue number is taken from it."""
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)


async def queue_create(cfg: Config, args: argparse.Namespace) -> int:
    data = parse(QueueCreate, {"name": args.name,
                               **_given(args, ("label", "kind", "strategy", "number",
                                               "site"))})
    async with open_pool(cfg) as pool:
        await _sync_extensions(pool, cfg)
        q, version = await run(pool, queues.create_queue, cfg, data, cli_actor())
        _emit(args, q.to_dict(), [f"created queue {_queue_line(q)}"])
        sys.stdout.flush()
        return await _wait(pool, cfg, args, version)


async def queue_set(cfg: Config, args: argparse.Namespace) -> int:
    fields = _given(args, ("label", "kind", "strategy", "number", "site"))
    if args.no_site:
        fields["site"] = None
    if args.new_name is not None:
        fields["name"] = args.new_name
    if args.no_number:
        fields["number"] = None
    data = parse(QueueUpdate, fields)
    async with open_pool(cfg) as pool:
        await _sync_extensions(pool, cfg)
        q, version = await run(pool, queues.update_queue, cfg, args.name, data, cli_actor())
        _emit(args, q.to_dict(), [f"queue {_queue_line(q)}"])
        sys.stdout.flush()
        return await _wait(pool, cfg, args, version)


async def queue_delete(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        version = await run(pool, queues.delete_queue, cfg, args.name, cli_actor(), force=args.force)
        _emit(args, {"deleted": args.name, "config_version": version}, [f"deleted queue {args.name}"])
        sys.stdout.flush()
        return await _wait(pool, cfg, args, version)


async def member_add(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        agent_id = await _agent_id(pool, args.agent)
        member, version = await run(pool, queues.set_member, cfg, args.name, agent_id,
                                    args.penalty, cli_actor())
        _emit(args, member.to_dict(),
              [f"{member.login} in {args.name} with penalty {member.penalty}"])
        sys.stdout.flush()
        return await _wait(pool, cfg, args, version)


async def member_remove(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        agent_id = await _agent_id(pool, args.agent)
        version = await run(pool, queues.remove_member, cfg, args.name, agent_id, cli_actor())
        _emit(args, {"removed": agent_id, "queue": args.name},
              [f"removed {args.agent} from {args.name}"])
        sys.stdout.flush()
        return await _wait(pool, cfg, args, version)


# --- departments, roles, account types -------------------------------------------------------


def _simple(sub: argparse._SubParsersAction, command: str, what: str, lister: Lister,
            line: Printer) -> argparse._SubParsersAction:
    p = sub.add_parser(command, help=f"{what}s")
    s = p.add_subparsers(dest=f"{command.replace('-', '_')}_action", metavar="ACTION", required=True)
    ls = s.add_parser("list", help=f"list {what}s")
    _json_flag(ls)

    async def list_all(cfg: Config, args: argparse.Namespace) -> int:
        async with open_pool(cfg) as pool:
            items = await lister(pool)
        _emit(args, {"items": [i.to_dict() for i in items]}, [line(i) for i in items])
        return EXIT_OK

    ls.set_defaults(func=list_all)
    return s


def _dept_line(d: Any) -> str:
    return f"{d.name:<32} {d.user_count} users"


def _role_line(r: Any) -> str:
    flags = [f for f, on in (("sip", r.sip_allowed), ("web", r.web_login), ("calls", r.calls_allowed),
                             ("builtin", r.builtin)) if on]
    return f"{r.name:<16} {r.label:<20} {','.join(flags):<24} {r.user_count} users"


def _type_line(t: Any) -> str:
    limit = "no limit" if t.max_users is None else f"at most {t.max_users}"
    return f"{t.name:<24} {t.user_count} users, {limit}"


def _change(make: Callable[..., Awaitable[Any]], model: type[BaseModel], fields: Fields, line: Printer,
            verb: str, by_name: bool) -> Change:
    async def go(cfg: Config, args: argparse.Namespace) -> int:
        data: BaseModel = parse(model, fields(args))
        async with open_pool(cfg) as pool:
            if by_name:
                # `roles set --force`: confirm taking SIP accounts away (sip_allowed off).
                extra = {"force": True} if getattr(args, "force", False) else {}
                item = await run(pool, make, cfg, args.name, data, cli_actor(), **extra)
            else:
                item = await run(pool, make, cfg, data, cli_actor())
        _emit(args, item.to_dict(), [f"{verb} {line(item)}"])
        return EXIT_OK
    return go


def register_directory(sub: argparse._SubParsersAction) -> None:
    s = _simple(sub, "departments", "department", lookups.list_departments, _dept_line)
    c = s.add_parser("create", help="create a department")
    c.add_argument("name")
    _json_flag(c)
    c.set_defaults(func=_change(lookups.create_department, DepartmentCreate,
                                lambda a: {"name": a.name}, _dept_line, "created", False))
    r = s.add_parser("rename", help="rename a department")
    r.add_argument("name")
    r.add_argument("new_name", metavar="NEW_NAME")
    _json_flag(r)
    r.set_defaults(func=_change(lookups.update_department, DepartmentUpdate,
                                lambda a: {"name": a.new_name}, _dept_line, "renamed", True))
    d = s.add_parser("delete", help="delete a department (in use: --force)")
    d.add_argument("name")
    d.add_argument("--force", action="store_true", help="also when users are in it")
    _json_flag(d)
    d.set_defaults(func=department_delete)

    s = _simple(sub, "roles", "role", lookups.list_roles, _role_line)
    for action in ("create", "set"):
        c = s.add_parser(action, help=f"{action} a role")
        c.add_argument("name")
        if action == "set":
            c.add_argument("--name", dest="new_name", metavar="NAME", help="rename (custom roles)")
            c.add_argument("--force", action="store_true",
                           help="with --no-sip-allowed: also when its agents have SIP accounts"
                                " (they lose them)")
        c.add_argument("--label")
        for flag, text in (("sip_allowed", "its users get SIP accounts"),
                           ("web_login", "its users may log in to the web"),
                           ("calls_allowed", "its users may make calls")):
            _bool_option(c, flag, text)
        _json_flag(c)

        def role_fields(a: argparse.Namespace) -> dict[str, Any]:
            out = _given(a, ("label", "sip_allowed", "web_login", "calls_allowed"))
            if getattr(a, "new_name", None) is not None:
                out["name"] = a.new_name
            if a.roles_action == "create":
                out["name"] = a.name
            return out

        c.set_defaults(func=_change(lookups.create_role if action == "create" else lookups.update_role,
                                    RoleCreate if action == "create" else RoleUpdate, role_fields,
                                    _role_line, "created" if action == "create" else "changed",
                                    action == "set"))
    d = s.add_parser("delete", help="delete a custom role without users")
    d.add_argument("name")
    _json_flag(d)
    d.set_defaults(func=role_delete)

    s = _simple(sub, "account-types", "account type", lookups.list_account_types, _type_line)
    for action in ("create", "set"):
        c = s.add_parser(action, help=f"{action} an account type (licence)")
        c.add_argument("name")
        if action == "set":
            c.add_argument("--name", dest="new_name", metavar="NAME", help="rename")
            c.add_argument("--no-limit", action="store_true", help="remove the licence limit")
        c.add_argument("--max-users", type=int, metavar="N", help="licence limit")
        _json_flag(c)

        def type_fields(a: argparse.Namespace) -> dict[str, Any]:
            out = _given(a, ("max_users",))
            if getattr(a, "new_name", None) is not None:
                out["name"] = a.new_name
            if getattr(a, "no_limit", False):
                out["max_users"] = None
            if getattr(a, "account_types_action", "") == "create":
                out["name"] = a.name
            return out

        c.set_defaults(func=_change(
            lookups.create_account_type if action == "create" else lookups.update_account_type,
            AccountTypeCreate if action == "create" else AccountTypeUpdate, type_fields, _type_line,
            "created" if action == "create" else "changed", action == "set"))


async def department_delete(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        await run(pool, lookups.delete_department, cfg, args.name, cli_actor(), force=args.force)
    _emit(args, {"deleted": args.name}, [f"deleted department {args.name}"])
    return EXIT_OK


async def role_delete(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        await run(pool, lookups.delete_role, cfg, args.name, cli_actor())
    _emit(args, {"deleted": args.name}, [f"deleted role {args.name}"])
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    register_queues(sub)
    register_directory(sub)
