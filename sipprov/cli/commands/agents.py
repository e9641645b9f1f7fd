"""`sipprov agents create|list|show|set|delete|password|sip-password|import|export`.

Single changes go through the agent service exactly like the HTTP API (same rules, same
errors); options are the API's field names (`--first-name`, `--caller-id`, `--queue
support:2` repeatable). Output is for people by default and JSON with `--json`.

Exit codes: 0 done; 2 bad input (the field is named on stderr; for an import: a bad
row, with its line - also when --continue-on-error imported the others); 3 database
unavailable; 1 anything else, including "done, but not applied within --timeout" and
"imported, but web passwords not all stored".

Secrets: a generated password (create, password, sip-password) is printed once, on
stdout, because the operator asked for it; it is never logged. An import writes them
to its credentials file instead (mode 0600), never to stdout. Given passwords are read
from stdin (`--password-stdin`), never from the command line (visible in `ps`).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import typing
from pathlib import Path
from typing import Any

import asyncpg

from sipprov import mailer
from sipprov.agents import avatars, extensions
from sipprov.agents import fields as agent_fields
from sipprov.agents import service as agents
from sipprov.agents.models import (
    NOT_NULLABLE_ON_UPDATE,
    Agent,
    AgentCreate,
    AgentCreated,
    AgentUpdate,
    parse,
)
from sipprov.apply import phones
from sipprov.apply import wait as applywait
from sipprov.bulk import csvformat as agentcsv
from sipprov.bulk import importer as bulk
from sipprov.cli.commands.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail, open_pool
from sipprov.config import Config
from sipprov.db.transaction import run
from sipprov.errors import NotFoundError, ValidationError

DEFAULT_WAIT_S = 30.0
DEFAULT_IMPORT_WAIT_S = 300.0
MAX_ERRORS_SHOWN = 100



def _cli_kind(f: agent_fields.AgentField) -> Any:
    """argparse's view of a registry field: bool -> --x/--no-x; a Literal -> choices."""
    choices = typing.get_args(f.type) if typing.get_origin(f.type) is typing.Literal else ()
    if choices:
        return list(choices)
    return f.type if f.type in (bool, int) else str


# (API field, type, help) for every field of the registry but queues (--queue, below).
FIELDS: tuple[tuple[str, Any, str], ...] = tuple(
    (f.name, _cli_kind(f), f.doc) for f in agent_fields.FIELDS if f.name != "queues"
)
# `set --clear FIELD`: optional fields (null clears them; caller_id and chat_name go back
# to their defaults) and queues (no memberships).
CLEARABLE = sorted(set(AgentUpdate.model_fields) - set(NOT_NULLABLE_ON_UPDATE)) + ["queues"]


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_fields(p: argparse.ArgumentParser, *, create: bool) -> None:
    g = p.add_argument_group("agent fields (the API's names)")
    for name, kind, text in FIELDS:
        required = create and name in ("first_name", "last_name", "email")
        if kind is bool:
            g.add_argument(_option(name), dest=name, action=argparse.BooleanOptionalAction,
                           default=None, help=text)
        elif isinstance(kind, list):
            g.add_argument(_option(name), dest=name, choices=kind, default=None, help=text)
        else:
            metavar = ("NAME" if name.endswith("name") or name == "caller_id"
                       else name.split("_")[-1].upper() if kind is str else "N")
            g.add_argument(_option(name), dest=name, type=kind, default=None, required=required,
                           metavar=metavar, help=text)
    g.add_argument("--queue", dest="queues", action="append", metavar="NAME[:PENALTY]",
                   help="queue membership, repeatable (penalty: optional override)"
                        + ("" if create else "; replaces all memberships"))


def _add_common(p: argparse.ArgumentParser, *, wait: bool = False) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    if wait:
        p.add_argument("--wait", action="store_true",
                       help="return once Asterisk has the change (applies it if no service does)")
        p.add_argument("--timeout", type=float, default=DEFAULT_WAIT_S, metavar="S",
                       help=f"seconds --wait waits (default {DEFAULT_WAIT_S:g})")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agents", help="agents: create, list, change, delete, import, export",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    asub = p.add_subparsers(dest="agents_action", metavar="ACTION", required=True)

    cr = asub.add_parser("create", help="create an agent; generated passwords are printed once")
    _add_fields(cr, create=True)
    cr.add_argument("--password-stdin", action="store_true",
                    help="read the web password from stdin (default: generated)")
    cr.add_argument("--sip-password-stdin", action="store_true",
                    help="read the SIP password from stdin (the line after the web password if both)")
    cr.add_argument("--send-credentials", action="store_true",
                    help="e-mail the login details to the agent (needs [smtp])")
    _add_common(cr, wait=True)
    cr.set_defaults(func=create)

    ls = asub.add_parser("list", help="list or search agents")
    ls.add_argument("-q", "--q", dest="q", help="name, login, e-mail (substring) or extension")
    ls.add_argument("--role", help="only this role")
    ls.add_argument("--department", help="only this department")
    ls.add_argument("--queue", help="only members of this queue")
    ls.add_argument("--agents-only", action="store_true", help="only users flagged as agents")
    ls.add_argument("--limit", type=int, default=50, help="page size (default 50, max 500)")
    ls.add_argument("--cursor", help="the next page's cursor (printed after a page)")
    ls.add_argument("--all", action="store_true", help="every page")
    _add_common(ls)
    ls.set_defaults(func=list_)

    sh = asub.add_parser("show", help="show one agent")
    sh.add_argument("agent", metavar="AGENT", help="id, login or e-mail")
    _add_common(sh)
    sh.set_defaults(func=show)

    st = asub.add_parser("set", help="change fields of an agent (only the options given)")
    st.add_argument("agent", metavar="AGENT", help="id, login or e-mail")
    _add_fields(st, create=False)
    st.add_argument("--clear", action="append", default=[], choices=CLEARABLE, metavar="FIELD",
                    help=f"clear an optional field (repeatable): {', '.join(CLEARABLE)}")
    st.add_argument("--force", action="store_true",
                    help="confirm a change that drops data (a role without SIP loses the"
                         " extension and queue memberships); without it such a change is refused")
    _add_common(st, wait=True)
    st.set_defaults(func=set_)

    dl = asub.add_parser("delete", help="delete an agent and free its extension")
    dl.add_argument("agent", metavar="AGENT", help="id, login or e-mail")
    _add_common(dl, wait=True)
    dl.set_defaults(func=delete)

    for verb, text in (("deactivate", "stop an agent without deleting it: no web login, the"
                        " phone cannot register; extension and queues are kept"),
                       ("reactivate", "let a deactivated agent log in and register again")):
        dv = asub.add_parser(verb, help=text)
        dv.add_argument("agent", metavar="AGENT", help="id, login or e-mail")
        _add_common(dv, wait=True)
        dv.set_defaults(func=set_active, active=verb == "reactivate")

    pw = asub.add_parser("password", help="set or generate the web password (printed once)")
    pw.add_argument("agent", metavar="AGENT", help="id, login or e-mail")
    pw.add_argument("--password-stdin", action="store_true",
                    help="read the new password from stdin (default: generated)")
    pw.add_argument("--send-credentials", action="store_true",
                    help="e-mail the new password to the agent (needs [smtp])")
    pw.add_argument("--force-change", action=argparse.BooleanOptionalAction, default=None,
                    help="must change it at next login (default: unchanged)")
    _add_common(pw)
    pw.set_defaults(func=password)

    sp = asub.add_parser("sip-password", help="set or generate the SIP password (printed once)")
    sp.add_argument("agent", metavar="AGENT", help="id, login or e-mail")
    sp.add_argument("--send-credentials", action="store_true",
                    help="e-mail the new SIP credentials to the agent (needs [smtp])")
    sp.add_argument("--password-stdin", action="store_true",
                    help="read the new SIP password from stdin (default: generated)")
    _add_common(sp, wait=True)
    sp.set_defaults(func=sip_password)

    av = asub.add_parser("avatar", help="upload, save or remove an agent's avatar")
    av.add_argument("agent", metavar="AGENT", help="id, login or e-mail")
    what = av.add_mutually_exclusive_group(required=True)
    what.add_argument("--set", type=Path, metavar="FILE", help="upload a PNG, JPEG or WebP (8 MB)")
    what.add_argument("--save", type=Path, metavar="FILE", help="write the uploaded avatar to FILE")
    what.add_argument("--remove", action="store_true", help="back to the gravatar")
    _add_common(av)
    av.set_defaults(func=avatar)

    im = asub.add_parser(
        "import", help="create/update agents from CSV (one transaction, one apply)",
        description=bulk.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    im.add_argument("file", type=Path, metavar="FILE.csv")
    im.add_argument("--dry-run", action="store_true",
                    help="check everything against the database and print what would change;"
                         " write nothing")
    im.add_argument("--match-email", action="store_true",
                    help="a row whose login matches nobody updates the agent of its e-mail even"
                         " when its name or login differs (default: such a row is rejected)")
    im.add_argument("--continue-on-error", action="store_true",
                    help="import the good rows; write the bad ones to the reject file")
    im.add_argument("--rejects", type=Path, metavar="PATH",
                    help="reject file (default FILE.rejects.csv; mode 0600)")
    im.add_argument("--credentials", type=Path, metavar="PATH",
                    help="where generated passwords go (default FILE.credentials.csv; mode 0600;"
                         " must not exist)")
    im.add_argument("--definitions", type=Path, metavar="PATH",
                    help="create the roles, departments, account types and queues of this file"
                         " (from `agents export --definitions`) that do not exist")
    im.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                    help="wait until Asterisk has the agents (default: yes)")
    im.add_argument("--timeout", type=float, default=DEFAULT_IMPORT_WAIT_S, metavar="S",
                    help=f"seconds --wait waits (default {DEFAULT_IMPORT_WAIT_S:g})")
    im.add_argument("--hash-workers", type=int, metavar="N",
                    help="processes hashing web passwords (default: every core)")
    im.add_argument("--no-progress", action="store_true", help="no progress output on stderr")
    _add_common(im)
    im.set_defaults(func=import_)

    ex = asub.add_parser("export", help="write every agent to CSV (no secrets)")
    ex.add_argument("file", metavar="FILE.csv", help="output file; - for stdout")
    ex.add_argument("--definitions", type=Path, metavar="PATH",
                    help="also write roles, departments, account types and queues (JSON)")
    ex.add_argument("--no-progress", action="store_true", help="no progress output on stderr")
    _add_common(ex)
    ex.set_defaults(func=export)


# --- helpers -----------------------------------------------------------------------------


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name (containers): still say where it came from
        return "cli"


def _read_secrets(count: int) -> list[str]:
    """`count` lines from stdin (without the newline)."""
    out = []
    for _ in range(count):
        line = sys.stdin.readline()
        if not line:
            raise ValidationError("password: expected a line on stdin", "password")
        out.append(line.rstrip("\r\n"))
    return out


def _queues(values: list[str] | None) -> list[dict[str, str]] | None:
    if values is None:
        return None
    return [item for v in values for item in agentcsv.parse_queues(v)]


def _field_values(args: argparse.Namespace) -> dict[str, Any]:
    data = {name: getattr(args, name) for name, _, _ in FIELDS if getattr(args, name) is not None}
    queues = _queues(args.queues)
    if queues is not None:
        data["queues"] = queues
    return data


async def _sync_extensions(pool: asyncpg.Pool, cfg: Config) -> None:
    """Bring the extension pool in line with the configured range, as `sipprov serve`
    does at start (idempotent): a CLI may run before any service ever did."""
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)


async def _resolve(pool: asyncpg.Pool, ref: str) -> Agent:
    if ref.isdecimal():
        return await agents.get_agent(pool, int(ref))
    found = await agents.find_agent(pool, ref)
    if found is None:
        raise NotFoundError(f"agent {ref} not found", "agent")
    return found


def _emit(args: argparse.Namespace, data: dict[str, Any], text: list[str]) -> None:
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        for line in text:
            print(line)


async def _wait(pool: asyncpg.Pool, cfg: Config, args: argparse.Namespace, version: int | None,
                out: dict[str, Any]) -> int:
    """After the result is printed (secrets are never lost to a failed wait)."""
    if not getattr(args, "wait", False) or version is None:
        return EXIT_OK
    result = await applywait.wait_applied(pool, cfg, version, args.timeout)
    if result.applied:
        if not args.json:
            print(f"applied (config version {version}, {result.seconds:.1f} s)", file=sys.stderr)
        return EXIT_OK
    return fail(f"not applied within {args.timeout:g} s (config version {version} pending): "
                f"{result.error}", EXIT_FAILED)


def _credentials_lines(created: AgentCreated) -> list[str]:
    lines = []
    if created.web_password is not None:
        lines.append(f"web password:  {created.web_password}")
    if created.sip is not None:
        s = created.sip
        lines += [f"SIP username:  {s.username}", f"SIP password:  {s.password}",
                  f"SIP realm:     {s.realm}", f"SIP server:    {s.server}"]
    if lines:
        lines.append("(shown once: hand these to the agent now)")
    return lines


def _describe(agent: Agent) -> str:
    ext = f", extension {agent.extension}" if agent.extension is not None else ", no SIP account"
    return f"{agent.login} (id {agent.id}{ext})"


def _show_lines(agent: Agent) -> list[str]:
    data = agent.to_dict()
    data["queues"] = agentcsv.format_queues(agent.queues) or "-"
    if agent.quarantine:
        # kept out of Asterisk by the applier: say why, and since when
        data["quarantine"] = f"{agent.quarantine['reason']} (since {agent.quarantine['since']})"
    data["warnings"] = "; ".join(agent.warnings) or None
    width = max(len(k) for k in data)
    return [f"{k:<{width}}  {'-' if v is None else agentcsv.format_cell(v)}" for k, v in data.items()]


# --- commands ------------------------------------------------------------------------------


async def create(cfg: Config, args: argparse.Namespace) -> int:
    data = _field_values(args)
    wanted = int(args.password_stdin) + int(args.sip_password_stdin)
    secrets = _read_secrets(wanted)
    if args.password_stdin:
        data["password"] = secrets.pop(0)
    if args.sip_password_stdin:
        data["sip_password"] = secrets.pop(0)
    if args.send_credentials:
        data["send_credentials"] = True
    model = parse(AgentCreate, data)
    async with open_pool(cfg) as pool:
        await _sync_extensions(pool, cfg)
        created = await run(pool, agents.create_agent, cfg, model, actor())
        out = {**created.to_dict(), "config_version": created.config_version}
        lines = [f"created agent {_describe(created.agent)}", *_credentials_lines(created)]
        if model.send_credentials:
            mail = await mailer.send_created(cfg.smtp, created, model.password)
            out["credentials_email"] = mail.to_dict()
            lines.append("credentials e-mailed" if mail.sent else f"credentials NOT e-mailed: {mail.error}")
        _emit(args, out, lines)
        sys.stdout.flush()
        return await _wait(pool, cfg, args, created.config_version, out)


async def list_(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        items: list[Agent] = []
        cursor = args.cursor
        while True:
            page = await agents.search_agents(
                pool, q=args.q, role=args.role, department=args.department, queue=args.queue,
                agents_only=args.agents_only, limit=args.limit, cursor=cursor)
            items.extend(page.items)
            cursor = page.next
            if not args.all or cursor is None:
                break
    if args.json:
        print(json.dumps({"items": [a.to_dict() for a in items], "next": cursor},
                         ensure_ascii=False, indent=2, default=str))
        return EXIT_OK
    print(f"{'ID':>6}  {'LOGIN':<28} {'NAME':<30} {'EXT':>5}  {'ROLE':<11} {'DEPARTMENT':<16} QUEUES")
    for a in items:
        name = f"{a.first_name} {a.last_name}"
        ext = "-" if a.extension is None else str(a.extension)
        print(f"{a.id:>6}  {a.login:<28} {name:<30} {ext:>5}  {a.role:<11} "
              f"{a.department or '-':<16} {agentcsv.format_queues(a.queues) or '-'}")
    if cursor:
        print(f"next page: --cursor {cursor}")
    return EXIT_OK


async def show(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        agent = agents.flagged(cfg, await _resolve(pool, args.agent))
    data, lines = agent.to_dict(), _show_lines(agent)
    if agent.extension is not None:
        regs = await phones.registrations_now(cfg, agent.extension)
        data["registration"] = None if regs is None else {
            "registered": bool(regs), "contacts": [r.as_dict() for r in regs]}
        lines.append(_registration_line(regs))
    _emit(args, data, lines)
    return EXIT_OK


def _registration_line(regs: list[phones.Registration] | None) -> str:
    if regs is None:
        return "registration  unknown (Asterisk's AMI is not reachable)"
    if not regs:
        return "registration  not registered"
    return "registration  " + "; ".join(
        f"{r.uri} ({r.user_agent or 'no user agent'}"
        + (f", until {r.expires_at:%Y-%m-%d %H:%M:%S} UTC)" if r.expires_at else ")")
        for r in regs)


async def set_(cfg: Config, args: argparse.Namespace) -> int:
    data = _field_values(args)
    for name in args.clear:
        if name in data:
            raise ValidationError(f"{name}: given and cleared at once", name)
        data[name] = [] if name == "queues" else None
    if not data:
        raise ValidationError("nothing to change: give at least one field option", None)
    model = parse(AgentUpdate, data)
    async with open_pool(cfg) as pool:
        await _sync_extensions(pool, cfg)
        agent = await _resolve(pool, args.agent)
        result = await run(pool, agents.update_agent, cfg, agent.id, model, actor(), force=args.force)
        out = {**result.to_dict(), "config_version": result.config_version}
        changed = result.agent.to_dict() != agent.to_dict()
        _emit(args, out, [f"{'updated' if changed else 'unchanged'}: agent {_describe(result.agent)}",
                          *_credentials_lines(result)])
        sys.stdout.flush()
        return await _wait(pool, cfg, args, result.config_version, out)


async def set_active(cfg: Config, args: argparse.Namespace) -> int:
    """deactivate / reactivate: an update of the `active` field (audited as one)."""
    model = parse(AgentUpdate, {"active": args.active})
    async with open_pool(cfg) as pool:
        agent = await _resolve(pool, args.agent)
        result = await run(pool, agents.update_agent, cfg, agent.id, model, actor())
        out = {**result.to_dict(), "config_version": result.config_version}
        verb = "reactivated" if args.active else "deactivated"
        if agent.active == args.active:
            verb = "already " + ("active" if args.active else "deactivated")
        _emit(args, out, [f"{verb}: agent {_describe(result.agent)}"])
        sys.stdout.flush()
        return await _wait(pool, cfg, args, result.config_version, out)


async def delete(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        agent = await _resolve(pool, args.agent)
        version = await run(pool, agents.delete_agent, cfg, agent.id, actor())
        out = {"deleted": agent.id, "login": agent.login, "config_version": version}
        _emit(args, out, [f"deleted agent {_describe(agent)}"])
        sys.stdout.flush()
        return await _wait(pool, cfg, args, version, out)


async def password(cfg: Config, args: argparse.Namespace) -> int:
    given = _read_secrets(1)[0] if args.password_stdin else None
    async with open_pool(cfg) as pool:
        agent = await _resolve(pool, args.agent)
        if args.send_credentials:
            mailer.refuse_unmailable(agent)
        generated = await run(pool, agents.set_web_password, cfg, agent.id, given, args.force_change, actor())
        mail = None
        if args.send_credentials:  # after the commit, with the password of this moment
            mail = await mailer.send_changed(cfg.smtp, await agents.get_agent(pool, agent.id),
                                             web_password=generated or given)
    out: dict[str, Any] = {"id": agent.id, "login": agent.login}
    lines = [f"web password of {agent.login} set"]
    if generated is not None:
        out["web_password"] = generated
        lines += [f"web password:  {generated}", "(shown once: hand it to the agent now)"]
    lines += _mail_lines(out, mail)
    _emit(args, out, lines)
    return EXIT_OK


def _mail_lines(out: dict[str, Any], mail: mailer.MailResult | None) -> list[str]:
    if mail is None:
        return []
    out["credentials_email"] = mail.to_dict()
    return ["credentials e-mailed" if mail.sent else f"credentials NOT e-mailed: {mail.error}"]


async def sip_password(cfg: Config, args: argparse.Namespace) -> int:
    given = _read_secrets(1)[0] if args.password_stdin else None
    async with open_pool(cfg) as pool:
        agent = await _resolve(pool, args.agent)
        if args.send_credentials:
            mailer.refuse_unmailable(agent)
        sip, version = await run(pool, agents.rotate_sip_password, cfg, agent.id, given, actor())
        out: dict[str, Any] = {"id": agent.id, "login": agent.login, "sip": sip.to_dict(),
                               "config_version": version}
        lines = [f"SIP password of {agent.login} changed"]
        if given is None:
            lines += _credentials_lines(AgentCreated(agent=agent, sip=sip))
        else:
            out["sip"].pop("password")
        if args.send_credentials:  # after the commit, with the password of this moment
            lines += _mail_lines(out, await mailer.send_changed(
                cfg.smtp, await agents.get_agent(pool, agent.id), sip=sip))
        _emit(args, out, lines)
        sys.stdout.flush()
        return await _wait(pool, cfg, args, version, out)


async def avatar(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        agent = await _resolve(pool, args.agent)
        if args.set is not None:
            try:
                data = args.set.read_bytes()
            except OSError as exc:
                raise ValidationError(f"--set: cannot read {args.set}: {exc.strerror}", "--set") from None
            await run(pool, avatars.store, agent.id, data, None, actor())
            out = {"id": agent.id, "login": agent.login, "avatar": "uploaded", "bytes": len(data)}
            line = f"avatar of {agent.login} uploaded ({len(data)} bytes)"
        elif args.save is not None:
            image = await avatars.get(pool, agent.id)
            args.save.write_bytes(image.data)
            out = {"id": agent.id, "login": agent.login, "content_type": image.content_type,
                   "file": str(args.save)}
            line = f"avatar of {agent.login} ({image.content_type}) written to {args.save}"
        else:
            await run(pool, avatars.delete, agent.id, actor())
            out = {"id": agent.id, "login": agent.login, "avatar": "removed"}
            line = f"avatar of {agent.login} removed"
    _emit(args, out, [line])
    return EXIT_OK


async def import_(cfg: Config, args: argparse.Namespace) -> int:
    opts = bulk.ImportOptions(
        dry_run=args.dry_run,
        continue_on_error=args.continue_on_error,
        match_email=args.match_email,
        actor=actor(),
        credentials_path=args.credentials,
        rejects_path=args.rejects,
        definitions_path=args.definitions,
        wait=args.wait,
        wait_timeout=args.timeout,
        hash_workers=args.hash_workers,
        progress=not args.no_progress,
    )
    async with open_pool(cfg) as pool:
        await _sync_extensions(pool, cfg)
        report = await bulk.import_file(pool, cfg, args.file, opts)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2, default=str))
    else:
        for line in _import_lines(report):
            print(line)
    for err in report.errors[:MAX_ERRORS_SHOWN]:
        print(f"sipprov: line {err.line}: {err.error}", file=sys.stderr)
    if len(report.errors) > MAX_ERRORS_SHOWN:
        print(f"sipprov: ... and {len(report.errors) - MAX_ERRORS_SHOWN} more bad rows"
              f"{' (see the reject file)' if report.rejects_path else ' (--json lists all)'}",
              file=sys.stderr)
    if report.errors:
        return EXIT_USAGE
    if report.wait is not None and not report.wait.applied:
        return fail(f"imported, but not applied within {args.timeout:g} s (config version"
                    f" {report.config_version} pending): {report.wait.error}", EXIT_FAILED)
    if report.hash_error or report.web_passwords_pending:
        return fail(f"imported, but {report.web_passwords_pending} web passwords were not stored"
                    f" ({report.hash_error}); those users cannot log in to the web until"
                    " `sipprov agents password LOGIN` gives them one", EXIT_FAILED)
    return EXIT_OK


def _cell(value: Any) -> str:
    if isinstance(value, list):  # queues
        return agentcsv.format_queues(value) or "(none)"
    return "(empty)" if value in (None, "") else agentcsv.format_cell(value)


def _import_lines(report: bulk.ImportReport) -> list[str]:
    counts = (f"{report.count('create')} created, {report.count('update')} updated,"
              f" {report.count('unchanged')} unchanged, {report.count('delete')} deleted,"
              f" {report.count('error')} bad")
    lines: list[str] = []
    if report.dry_run:
        for r in report.rows:
            if r.action == "error":
                continue
            ext = f" (extension {r.extension})" if r.extension is not None else ""
            lines.append(f"line {r.line}: {r.action} {r.login or ''}{ext}")
            for name, (before, after) in sorted((r.changes or {}).items()):
                lines.append(f"    {name}: {_cell(before)} -> {_cell(after)}")
        lines.append(f"dry run of {report.path}: would be {counts}; nothing was written")
        return lines
    if not report.committed:
        lines.append(f"{report.path}: nothing imported ({report.count('error')} bad rows;"
                     " fix them, or --continue-on-error to import the others)")
        return lines
    lines.append(f"imported {report.path}: {counts}")
    for name in report.definitions_created:
        lines.append(f"created {name}")
    if report.rejects_path:
        lines.append(f"bad rows written to {report.rejects_path}")
    if report.wait is not None and report.wait.applied:
        lines.append(f"config version {report.config_version} applied "
                     f"({report.wait.seconds:.1f} s)")
    if report.credentials_path:
        lines.append(f"generated passwords written to {report.credentials_path} (mode 0600):"
                     " hand them out, then delete the file")
    if report.web_passwords_stored:
        lines.append(f"web passwords stored for {report.web_passwords_stored} agents")
    return lines


async def export(cfg: Config, args: argparse.Namespace) -> int:
    async with open_pool(cfg) as pool:
        try:
            report = await bulk.export_file(pool, args.file, definitions_path=args.definitions,
                                            progress=not args.no_progress)
        except OSError as exc:
            return fail(f"cannot write {exc.filename or args.file}: {exc.strerror or exc}", EXIT_FAILED)
    if args.file == "-":
        return EXIT_OK
    _emit(args, report.to_dict(),
          [f"exported {report.agents} agents to {report.path}"
           + (f" and definitions to {report.definitions_path}" if report.definitions_path else "")])
    return EXIT_OK
