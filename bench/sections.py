"""The sections of docs/benchmarks.md for the scale-out runs (issue 15), built from
bench/results.json: `scaleout` (bench/scaleout.py: one node against two behind
Kamailio) and `failover` (bench/failover.py: the applier leader SIGKILLed).

report.markdown() appends them (and the backends section, bench/backends.py) when
the results hold them, so a pipeline run that rewrites the file keeps them."""

from __future__ import annotations

from typing import Any

SCALEOUT = "## Scale-out: one node against two behind Kamailio (issue 15)"
FAILOVER = "## Applier leader failover (issue 15)"


def _ladder(steps: dict[str, Any]) -> str:
    """`500/s (750/s: 99.9%)`: the highest rate without a loss, then the first loss."""
    best = steps.get("capacity_per_s")
    first = steps.get("first_failures_at_per_s")
    lost = next((s for s in steps.get("steps", []) if s.get("failed")), None)
    text = f"{best:g}/s" if best else "below the first rate"
    if first and lost:
        text += f" (at {first:g}/s: {lost['success_pct']}% registered)"
    return text


def scaleout(so: dict[str, Any]) -> list[str]:
    if not so or "one_node_astdb" not in so:
        return []
    c2r = so.get("create_to_registrable_ms", {})
    kill = so.get("node_killed_during_storm", {})
    storm = kill.get("storm", {})
    rows = [
        ("REGISTER storm of all agents: highest rate without a loss, one node, contacts "
         "in astdb", _ladder(so["one_node_astdb"])),
        ("same, one node, shared contacts (PostgreSQL)", _ladder(so.get("one_node_shared", {}))),
        ("same, two nodes with shared contacts behind Kamailio",
         _ladder(so.get("two_nodes_front", {}))),
        ("create -> registrable p50, REGISTER to node 1 / node 2 / the front",
         " / ".join(f"{c2r.get(k, {}).get('p50')} ms" for k in ("node1", "node2", "front"))),
        (f"node 2 SIGKILLed in a {kill.get('rate_per_s', 0):g}/s storm through the front: "
         "registrations lost", f"{kill.get('lost')} of {storm.get('ok', 0) + storm.get('failed', 0)}"),
        ("... the dispatcher marked it down after", f"{kill.get('dispatcher_marked_down_s')} s"),
        ("... a phone registering every 50 ms through the front: back to normal after",
         f"{kill.get('recovered_after_s')} s ({kill.get('probes_failed')} of "
         f"{kill.get('probes_after_kill')} REGISTERs failed)"),
    ]
    lines = [SCALEOUT, "",
             f"Measured {so.get('date', '')} by `python -m bench.scaleout` ({so.get('agents'):,} "
             f"agents, realtime backend, load average at the end "
             f"{so.get('load', {}).get('loadavg_end')}): two instances of the development PBX "
             "root and Kamailio on loopback, on the same 2-core machine as PostgreSQL, SIPp and "
             "sipprov, so the two-node figures show the mechanism, not the capacity of two "
             "boxes. docs/scale-out.md (\"Figures\") explains them.", "",
             "| | |", "| --- | ---: |"]
    lines += [f"| {what} | {value} |" for what, value in rows]
    return lines + [""]


def failover(fo: dict[str, Any]) -> list[str]:
    if not fo or "takeover_s" not in fo:
        return []
    t, c = fo["takeover_s"], fo.get("create_applied_across_failover_s", {})
    s = fo.get("settings", {})
    return [FAILOVER, "",
            f"Measured {fo.get('date', '')} by `{fo.get('command', 'python -m bench.failover')}`: "
            "two `sipprov serve` processes on one PostgreSQL, the leader SIGKILLed "
            f"{fo.get('kills')} times (lease: try every {s.get('leader_poll_s')} s, "
            f"confirmed every {s.get('leader_check_s')} s, lost after {s.get('leader_lease_s')} s; "
            "docs/scale-out.md).", "",
            "| | p50 | max |", "| --- | ---: | ---: |",
            f"| SIGKILL -> the follower leads | {t.get('p50')} s | {t.get('max')} s |",
            f"| SIGKILL -> an agent created through the follower is applied | {c.get('p50')} s "
            f"| {c.get('max')} s |", ""]


def markdown(results: dict[str, Any]) -> list[str]:
    """Every issue-11/15 section the results hold, in order."""
    from . import backends

    out: list[str] = []
    if results.get("backends", {}).get("by_n"):
        out += backends.section(results["backends"])
    out += scaleout(results.get("scaleout", {}))
    out += failover(results.get("failover", {}))
    return out
