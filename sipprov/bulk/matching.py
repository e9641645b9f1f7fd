"""Import step 3: match each row to an existing agent (login, else e-mail) and validate
it with the API's models and the agent service's rules; duplicates within the file name
both lines."""

from __future__ import annotations

from typing import Any

from sipprov.agents import naming
from sipprov.agents import rules as agentrules
from sipprov.agents import service as agents
from sipprov.agents.models import NOT_NULLABLE_ON_UPDATE, Agent, AgentCreate, AgentUpdate, parse
from sipprov.bulk import csvformat as agentcsv
from sipprov.bulk.state import ImportState, Row
from sipprov.db.sql import bulk as sql
from sipprov.errors import N_, SipprovError, ValidationError

# Update fields whose empty cell clears the value.
_CLEARABLE = frozenset(AgentUpdate.model_fields) - set(NOT_NULLABLE_ON_UPDATE)


async def match_and_validate(st: ImportState) -> None:
    keys = await sql.user_keys(st.conn)
    by_login = {r["login"]: r["id"] for r in keys}
    by_email = {r["email"]: r["id"] for r in keys}
    matched: dict[int, int] = {}  # row index -> user id
    by_email_only: set[int] = set()  # rows matched by e-mail alone
    for i, row in enumerate(st.rows):
        login = row.csv.cells.get("login", "").strip().lower()
        email = row.csv.cells.get("email", "").strip().lower()
        uid = by_login.get(login) if login else None
        if uid is None and email and email in by_email:
            uid = by_email[email]
            by_email_only.add(i)
        if uid is not None:
            matched[i] = uid
    loaded = {
        r["id"]: agents.agent_from_row(r)
        for r in await sql.agents_by_ids(st.conn, sorted(set(matched.values())))
    }

    seen_agent: dict[int, int] = {}
    with st.progress.step("validate", len(st.rows)) as bar:
        for i, row in enumerate(st.rows):
            uid = matched.get(i)
            try:
                action = agentcsv.parse_action(row.csv.cells.get("action", ""))
                if i in by_email_only and not st.opts.match_email:
                    _check_email_match(row, loaded[uid])  # type: ignore[index]
                if uid is None:
                    _check_unmatched(row, action)
                elif action == "create":
                    raise ValidationError.because(
                        "login", N_("action create, but agent %(login)s exists"), login=loaded[uid].login)
                if uid is not None:
                    if uid in seen_agent:
                        raise ValidationError.because(
                            "login", N_("the same agent as line %(line)s"), line=seen_agent[uid])
                    seen_agent[uid] = row.csv.line
                    row.agent = loaded[uid]
                    row.result.agent_id = uid
                    row.result.login = row.agent.login
                    if action == "delete":
                        row.result.action = "delete"
                    else:
                        row.result.action = "update"
                        _validate_update(st, row, action)
                else:
                    await _validate_create(st, row)
            except SipprovError as exc:
                row.fail(exc)
            bar.update()
    _check_file_duplicates(st)


def _check_email_match(row: Row, agent: Agent) -> None:
    """A row matched by e-mail alone is that agent only when it names nobody else: a
    different login, or a different name, means another person whose address is
    taken - rejected, naming the agent it would have overwritten (ImportOptions.
    match_email / --match-email takes the e-mail as the identity instead)."""
    cells = row.csv.cells
    login = cells.get("login", "").strip()
    who = f"{agent.login} ({agent.first_name} {agent.last_name})"
    if login:
        raise ValidationError(
            f"login: no agent has login {login}, and e-mail {agent.email} belongs to {who};"
            " to change that agent's login use --match-email", "login")
    for col in ("first_name", "last_name"):
        given = cells.get(col, "").strip()
        if given and _same_name(given, getattr(agent, col)) is False:
            raise ValidationError(
                f"email: {agent.email} belongs to {who}, not {cells.get('first_name', '').strip()}"
                f" {cells.get('last_name', '').strip()}; give login {agent.login} to update"
                " that agent, or --match-email to match by e-mail", "email")


def _check_unmatched(row: Row, action: str) -> None:
    """A row that matches no agent creates one, unless it names an agent to change
    (action update/delete, or a login without what a new agent needs): then the
    unknown login or e-mail is the error, named."""
    cells = row.csv.cells
    login = cells.get("login", "").strip()
    email = cells.get("email", "").strip()
    who = f"login {login}" if login else f"e-mail {email}"
    field_name = "login" if login else "email"
    if action in ("update", "delete", "deactivate", "reactivate"):
        raise ValidationError(f"{field_name}: no agent with {who} to {action}", field_name)
    missing = [c for c in ("first_name", "last_name", "email") if not cells.get(c, "").strip()]
    if not action and login and missing:
        raise ValidationError(
            f"login: no agent with login {login}; a new agent also needs {', '.join(missing)}",
            "login")


def _validate_update(st: ImportState, row: Row, action: str = "") -> None:
    assert row.agent is not None
    data: dict[str, Any] = {}
    if action in ("deactivate", "reactivate"):
        active = action == "reactivate"
        cell = row.csv.cells.get("active", "").strip()
        if cell and agentcsv.parse_bool(cell, "active") != active:
            raise ValidationError(f"active: {cell} contradicts action {action}", "active")
        data["active"] = active
    for col, cell in row.csv.cells.items():
        value = cell.strip()
        if col == "action":
            continue
        if col == "force":
            row.force = agentcsv.parse_bool(cell, col)
        elif col == "password":
            row.new_password = cell or None
        elif col == "sip_password":
            row.new_sip_password = cell or None
        elif col == "queues":
            data["queues"] = agentcsv.parse_queues(value)
        elif col == "active" and "active" in data:
            continue
        elif value:
            data[col] = value
        elif col in _CLEARABLE:
            data[col] = None
    row.update = data
    parse(AgentUpdate, data)  # the model's rules, field named
    row.result.login = data.get("login") or row.agent.login
    row.result.extension = row.agent.extension
    row.result.agent_id = row.agent.id


async def _validate_create(st: ImportState, row: Row) -> None:
    """The create rules that need no database write (agentrules.plan_create, as
    agents.create_agent)."""
    data: dict[str, Any] = {}
    for col, cell in row.csv.cells.items():
        value = cell if col in agentcsv.SECRET_COLUMNS else cell.strip()
        if col in agentcsv.CONTROL_COLUMNS:
            agentcsv.parse_bool(value, col)  # checked; nothing to confirm on a create
            continue
        if not value:
            continue
        data[col] = agentcsv.parse_queues(value) if col == "queues" else value
    create = parse(AgentCreate, data)
    row.create = create
    role = await st.once("role", create.role, agentrules.share_role)
    row.plan = plan = agentrules.plan_create(st.cfg, create, role)
    row.result.login = plan.base_login
    row.result.extension = create.extension


def _check_file_duplicates(st: ImportState) -> None:
    """Login, e-mail and extension must be unique within the file, too."""
    logins: dict[str, int] = {}
    emails: dict[str, int] = {}
    numbers: dict[int, int] = {}
    for row in st.rows:
        if not row.ok or row.result.action == "delete":
            continue
        if row.create is not None:
            login = row.create.login
            email = row.create.email
            number = row.create.extension
        else:
            assert row.agent is not None and row.update is not None
            login = row.update.get("login") or row.agent.login
            email = row.update.get("email") or row.agent.email
            number = row.update.get("extension")
            number = int(number) if number not in (None, "") else None
        checks: list[tuple[str, Any, dict]] = [("email", email.lower(), emails)]
        if login:
            checks.append(("login", login.lower(), logins))
        if number is not None:
            checks.append(("extension", number, numbers))
        for name, value, seen in checks:
            if value in seen:
                row.fail(ValidationError.because(
                    name, N_("%(value)s is also on line %(line)s"), value=value, line=seen[value]))
                break
        else:
            for _name, value, seen in checks:
                seen[value] = row.csv.line


def _same_name(a: str, b: str) -> bool:
    """Names compared as people write them: case, spacing and diacritics ignored
    (`Lukasz` is `Łukasz`)."""
    def norm(text: str) -> str:
        return " ".join((naming.fold_ascii(text) or text).lower().split())
    return norm(a) == norm(b)
