"""Smoke test of the benchmark harness (`python -m bench`) at a tiny size, end to end
against the real embedded PostgreSQL, the real Asterisk (its own instance) and SIPp:
the command must finish, clean up after itself, and write results with every key the
report and docs/benchmarks.md are built from. Figures are not checked (a smoke test
is not a benchmark), only that they were measured and that nothing was lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sipprov import pbx as pbx_mod
from sipprov.config import Config

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"

pytestmark = pytest.mark.pbx


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the PBX is required in CI: {reason}", pytrace=False)
    pytest.skip(f"PBX unavailable: {reason}")


def test_bench_runs_end_to_end_at_a_tiny_size(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        _unavailable("needs root (chroot, mount)")
    if not shutil.which("sipp"):
        _unavailable("sipp is not installed (apt-get install sip-tester)")
    if not pbx_mod.is_built(Config().pbx):
        _unavailable("the PBX root is not built (sipprov pbx build)")
    instances = Config().pbx.instance_dir.parent
    before = {p.name for p in instances.glob("bench-*")}
    out, md = tmp_path / "results.json", tmp_path / "benchmarks.md"
    argv = [sys.executable, "-m", "bench", "--agents", "50", "--creates", "5", "--burst", "20",
            "--import-rows", "50", "--rotations", "3", "--floor-reloads", "2",
            "--register-sample", "10", "--import-role", "extension",
            "--out", str(out), "--markdown", str(md)]
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, f"bench failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    assert "create -> registrable" in res.stderr.lower()  # progress lines

    r = json.loads(out.read_text())
    assert r["complete"] is True
    for key in ("date", "machine", "versions", "options", "settings", "load", "floor",
                "create_to_registrable", "rotation", "burst", "bulk_import", "memory",
                "apply_breakdown", "sip_register_overhead", "goals", "duration_s"):
        assert key in r, key
    assert {"cores", "cpu_model", "ram_bytes", "kernel"} <= set(r["machine"])
    assert {"python", "sipprov", "asterisk", "postgresql", "sipp"} <= set(r["versions"])
    assert r["versions"]["asterisk"] and r["versions"]["postgresql"]

    fl = r["floor"]["50"]
    assert fl["endpoints_loaded"] == 50 and fl["register_ok"] and fl["reload_s"] > 0

    c = r["create_to_registrable"]["50"]
    assert c["count"] == 5 and c["ok"] == 5 and c["failed"] == 0
    assert {"p50", "p95"} <= set(c["total_s"]) and c["ratio_p50_to_floor"] > 0

    rot = r["rotation"]["50"]
    assert rot["ok"] == 3 and rot["ratio_p50_to_floor"] > 0

    b = r["burst"]
    assert b["count"] == 20 and b["acknowledged"] == 20
    assert b["duplicate_extensions"] == 0 and b["duplicate_logins"] == 0
    assert b["lost_db"] == 0 and b["lost_asterisk"] == 0
    assert b["res_pjsip_reloads_incl_final"] >= 1 and b["creates_per_s"] > 0

    imp = r["bulk_import"]
    assert imp["rows"] == 50 and imp["created"] == 50 and imp["missing_in_asterisk"] == 0
    assert imp["register_ok"] == 10 and imp["registered_s"] > 0

    mem = r["memory"]
    assert mem["service_rss_bytes"] > 0 and mem["asterisk_rss_bytes"] > 0
    assert len(r["goals"]) == 4 and all("met" in g for g in r["goals"])

    text = md.read_text()
    assert "## Goals" in text and "Create to registrable" in text

    # cleaned up: no bench instance of this run left in the PBX root
    left = [p.name for p in instances.glob("bench-*") if p.name not in before
            and not Path(f"/proc/{p.name.removeprefix('bench-')}").exists()]
    assert not left, f"bench instances left behind: {left}"


def test_scaleout_bench_runs_end_to_end_at_a_tiny_size(tmp_path: Path) -> None:
    """`python -m bench.scaleout`: two nodes, Kamailio, the storms, the node kill."""
    if os.geteuid() != 0:
        _unavailable("needs root (chroot, mount)")
    if not shutil.which("sipp") or not shutil.which("kamailio"):
        _unavailable("sipp and kamailio are needed (apt-get install sip-tester kamailio)")
    out = tmp_path / "results.json"
    out.write_text('{"other": 1}\n')
    argv = [sys.executable, "-m", "bench.scaleout", "--agents", "60", "--samples", "2",
            "--rates", "500", "--out", str(out), "--markdown", str(tmp_path / "b.md")]
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, f"bench failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    r = json.loads(out.read_text())
    assert r["other"] == 1, "the other keys of results.json must stay"
    s = r["scaleout"]
    assert s["complete"] is True
    for key in ("one_node_astdb", "one_node_shared", "two_nodes_front"):
        assert s[key]["steps"] and s[key]["steps"][0]["ok"] > 0, key
    assert set(s["create_to_registrable_ms"]) == {"node1", "node2", "front"}
    killed = s["node_killed_during_storm"]
    assert killed["dispatcher_marked_down_s"] is not None
    assert "registrations lost" in res.stdout
    assert "## Scale-out: one node against two behind Kamailio" in (tmp_path / "b.md").read_text()
    instances = Config().pbx.instance_dir.parent
    assert not [p for p in instances.glob("bench-*") if str(os.getpid()) not in p.name
                and not Path(f"/proc/{p.name.split('-')[1]}").exists()]
