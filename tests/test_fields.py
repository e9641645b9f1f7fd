"""The agent field registry (sipprov/agents/fields.py) is the one list: the models, the
CSV columns, the SQL column lists, the CLI options and the snapshot follow it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from sipprov.agents import fields
from sipprov.agents import rules as agentrules
from sipprov.agents import service as agents
from sipprov.agents.models import Agent, AgentCreate, AgentUpdate
from sipprov.bulk import csvformat
from sipprov.cli.commands import agents as cli_agents
from sipprov.db.sql import agents as agents_sql
from sipprov.db.sql import snapshot as snapshot_sql

ROOT = Path(__file__).resolve().parent.parent


def test_consumers_follow_the_registry() -> None:
    names = [f.name for f in fields.FIELDS]
    assert [n for n in AgentCreate.model_fields if n in names] == names
    assert set(AgentCreate.model_fields) - set(names) == {"password", "sip_password", "send_credentials"}
    assert list(AgentUpdate.model_fields) == names
    assert [f.name for f in dataclasses.fields(Agent)][1:len(names) + 1] == names
    assert csvformat.AGENT_COLUMNS == tuple(names)
    assert [name for name, _, _ in cli_agents.FIELDS] == [n for n in names if n != "queues"]
    for f in fields.stored():
        assert f.stored_column in agents_sql.INSERT_COLUMNS
        assert f"{f.select_expr} AS {f.name}" in agents_sql.AGENT_SELECT
    assert set(agentrules.PLAIN_FIELDS) == {f.name for f in fields.FIELDS if f.storage == "plain"}
    assert {f.stored_column for f in fields.FIELDS if f.asterisk} <= agents.ASTERISK_COLUMNS
    for column in fields.rendered_columns():
        assert f"u.{column} AS {column}" in snapshot_sql.AGENTS


# Run in a fresh interpreter: a field added to the registry before anything else is
# imported must show up in every consumer without touching them.
_PROBE = textwrap.dedent("""
    import dataclasses, json
    from sipprov.agents import fields
    fields.FIELDS = fields.FIELDS + (
        fields.AgentField("shoe_size", int, "shoe size", nullable=True, clearable=True,
                          constraints={"ge": 1, "le": 60}, asterisk=True),
    )
    fields.BY_NAME["shoe_size"] = fields.FIELDS[-1]
    from sipprov.agents.models import Agent, AgentCreate, AgentUpdate, parse
    from sipprov.agents import rules, service
    from sipprov.bulk import csvformat
    from sipprov.cli.commands import agents as cli
    from sipprov.db.sql import agents as sql, bulk
    from sipprov.http.openapi import build_document
    from sipprov.http.app import route_table
    schemas = build_document(route_table())["components"]["schemas"]
    created = parse(AgentCreate, {"first_name": "A", "last_name": "B", "email": "a@example.com",
                                  "shoe_size": 44})
    try:
        parse(AgentUpdate, {"shoe_size": 99})
        refused = None
    except Exception as exc:
        refused = exc.field
    print(json.dumps({
        "create": created.shoe_size,
        "update_refuses": refused,
        "update_clears": parse(AgentUpdate, {"shoe_size": None}).changes(),
        "agent": "shoe_size" in [f.name for f in dataclasses.fields(Agent)],
        "csv": "shoe_size" in csvformat.AGENT_COLUMNS,
        "cli": "shoe_size" in [n for n, _, _ in cli.FIELDS],
        "insert": "shoe_size" in sql.INSERT_COLUMNS,
        "select": "u.shoe_size AS shoe_size" in sql.AGENT_SELECT,
        "export": "u.shoe_size AS shoe_size" in bulk.ALL_AGENTS,
        "plain": "shoe_size" in rules.PLAIN_FIELDS,
        "asterisk": "shoe_size" in service.ASTERISK_COLUMNS,
        "openapi": sorted(k for k, v in schemas.items() if "shoe_size" in v.get("properties", {})),
    }))
""")


def test_a_field_added_to_the_registry_alone_reaches_every_consumer() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {
        "create": 44, "update_refuses": "shoe_size", "update_clears": {"shoe_size": None},
        "agent": True, "csv": True, "cli": True, "insert": True, "select": True, "export": True,
        "plain": True, "asterisk": True, "openapi": ["Agent", "AgentCreate", "AgentUpdate"],
    }
