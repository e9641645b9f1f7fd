"""Every Asterisk node at a glance (/status, `sipprov status`): reachable, applied
version, registered phones, last error.

What the applier recorded (node_state) is the base: it may run in another process.
The service adds what it knows live (its applier's and phone tracker's view); the CLI
asks each node's AMI itself (probe), so it is right while the service runs elsewhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import asyncpg

from sipprov.apply.ami import AmiClient, AmiError
from sipprov.apply.stats import iso
from sipprov.config import Config, Node
from sipprov.db.sql import contacts as contacts_sql
from sipprov.db.sql import nodes as nodes_sql

PROBE_TIMEOUT_S = 3.0


@dataclasses.dataclass(frozen=True)
class Probe:
    reachable: bool
    # Agents (numeric AORs) with at least one contact on the node.
    registered: int | None
    error: str | None
    # The node's systemname (None: unknown).
    system_name: str | None = None


async def probe(node: Node, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """Ask the node's AMI: does it answer, how many agents' phones are registered."""
    ast = dataclasses.replace(node.asterisk, ami_timeout_s=timeout)
    try:
        async with asyncio.timeout(timeout * 2):
            async with AmiClient(ast) as ami:
                _, system_name = await ami.core_settings()
                contacts = await ami.pjsip_contacts()
    except (AmiError, OSError, TimeoutError) as exc:
        return Probe(False, None, str(exc) or type(exc).__name__)
    aors = {c.get("Aor", "") for c in contacts}
    return Probe(True, sum(1 for a in aors if a.isdigit()), None, system_name)


async def report(cfg: Config, pool: asyncpg.Pool | asyncpg.Connection,
                 live: list[dict[str, Any]] | None = None,
                 phones: dict[str, dict[str, Any]] | None = None,
                 probed: dict[str, Probe] | None = None) -> list[dict[str, Any]]:
    """One entry per configured node, from node_state, the service's live view
    (`live`: applier.status()["nodes"], `phones`: PhoneTracker.nodes()) or a probe."""
    recorded = await nodes_sql.read_all(pool)
    by_name = {n["name"]: n for n in live or []}
    # Shared registrations: every node lists every phone, so a node's own are the rows
    # whose reg_server is its systemname (learnt over AMI).
    per_server = (await contacts_sql.registered_per_server(pool)
                  if cfg.asterisk.shared_contacts else None)
    out = []
    for node in cfg.nodes:
        row = recorded.get(node.name)
        now = by_name.get(node.name, {})
        entry: dict[str, Any] = {
            "name": node.name,
            "site": node.site,
            "ami": f"{node.asterisk.ami_host}:{node.asterisk.ami_port}",
            "sip_server": node.asterisk.sip_server,
            "reachable": row.reachable if row else None,
            "applied_version": row.applied_version if row else 0,
            "applied_at": iso(row.applied_at) if row else None,
            "checked_at": iso(row.checked_at) if row else None,
            "registered": None,
            "last_error": row.last_error if row else None,
            "last_error_at": iso(row.last_error_at) if row else None,
        }
        if now:
            for key in ("reachable", "last_error", "last_error_at"):
                entry[key] = now.get(key)
            entry["applied_version"] = max(entry["applied_version"], now["applied_version"])
        if phones and node.name in phones:
            entry["registered"] = phones[node.name].get("registered")
        system_name = now.get("system_name")
        if probed and node.name in probed:
            p = probed[node.name]
            entry["reachable"] = p.reachable
            entry["registered"] = p.registered
            system_name = p.system_name or system_name
            if not p.reachable:
                entry["last_error"] = entry["last_error"] or f"AMI: {p.error}"
        if per_server is not None:
            entry["registered"] = (per_server.get(system_name, 0)
                                   if system_name is not None else None)
        entry["system_name"] = system_name
        out.append(entry)
    return out


async def probe_all(cfg: Config) -> dict[str, Probe]:
    nodes = cfg.nodes
    found = await asyncio.gather(*(probe(n) for n in nodes))
    return {n.name: p for n, p in zip(nodes, found, strict=True)}
