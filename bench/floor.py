"""The floor: what Asterisk itself needs to reload N file-defined PJSIP endpoints.

The config is written by a hand-rolled generator here (NOT sipprov's renderer), with the
same kind of objects sipprov writes for an agent: an endpoint, a digest auth (MD5 and
SHA-256 `password_digest`, no plaintext) and an AOR. It goes into the instance's
generated pjsip.conf (which the instance's pjsip.conf #tryincludes), and the time
measured is the AMI `Reload res_pjsip.so` round trip: Asterisk answers once the reload
is done.

res_sorcery_config skips the reload when no file changed (CONFIG_FLAG_FILEUNCHANGED),
so every timed reload follows a real change: one more endpoint than before, which is
exactly what a create does.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from sipprov import pbx as pbx_mod
from sipprov.apply.ami import AmiClient
from sipprov.config import Config
from sipprov.pbx import sipp

from . import machine
from .env import stage
from .stats import median

# Endpoint names of the floor config: a range no sipprov agent uses in the same phase.
FLOOR_FIRST = 200000


def floor_password(ext: int) -> str:
    return f"Floor{ext}pw"


def endpoint_text(ext: int, realm: str, transport: str, context: str) -> str:
    material = f"{ext}:{realm}:{floor_password(ext)}".encode()
    md5 = hashlib.md5(material).hexdigest()
    sha = hashlib.sha256(material).hexdigest()
    return (
        f"[{ext}]\ntype=endpoint\ntransport={transport}\ncontext={context}\n"
        f"disallow=all\nallow=ulaw,alaw\nauth={ext}\naors={ext}\n\n"
        f"[{ext}]\ntype=auth\nauth_type=digest\nusername={ext}\nrealm={realm}\n"
        f"password_digest=MD5:{md5}\npassword_digest=SHA-256:{sha}\n\n"
        f"[{ext}]\ntype=aor\nmax_contacts=1\nremove_existing=yes\n\n"
    )


def write_endpoints(cfg: Config, count: int) -> Path:
    ast = cfg.asterisk
    parts = ["; bench floor: hand-written endpoints\n\n"]
    parts.extend(endpoint_text(FLOOR_FIRST + i, ast.sip_realm, ast.transport, ast.internal_context)
                 for i in range(count))
    path = Path(cfg.generated_dir) / "pjsip.conf"
    pbx_mod.write_atomic(path, "".join(parts), cfg.security.file_mode)
    return path


def clear_endpoints(cfg: Config) -> None:
    pbx_mod.write_atomic(Path(cfg.generated_dir) / "pjsip.conf", "; bench: empty\n",
                         cfg.security.file_mode)


async def timed_reload(ami: AmiClient, pid: int | None = None) -> tuple[float, float | None]:
    """Wall time of one AMI Reload res_pjsip.so, and the CPU Asterisk used meanwhile."""
    c0 = machine.cpu_seconds(pid)
    t0 = time.perf_counter()
    await ami.reload("res_pjsip.so")
    wall = time.perf_counter() - t0
    c1 = machine.cpu_seconds(pid)
    return wall, (c1 - c0 if c0 is not None and c1 is not None else None)


async def measure(cfg: Config, ami: AmiClient, n: int, reloads: int,
                  asterisk_pid: int | None = None, warmup: int = 0) -> dict[str, Any]:
    """First load of N endpoints (from none), then `warmup` reloads (timed, reported,
    not the floor), then `reloads` reloads: the floor is their median. Each reload has
    one endpoint more than the one before.

    Why a warm-up: Asterisk's reloads of a big config get slower over the first several
    (at 10,000 endpoints the CPU per reload goes from about the first load's to about
    2.5 times it by the 8th reload, then stays there), and a running service reloads a
    long-running Asterisk: the floor is that steady state, not the first reloads."""
    clear_endpoints(cfg)
    empty_s, _ = await timed_reload(ami)
    write_endpoints(cfg, n)
    first_s, first_cpu = await timed_reload(ami, asterisk_pid)
    loaded = await ami.pjsip_endpoints()
    ours = sum(1 for name in loaded if name.isdigit() and int(name) >= FLOOR_FIRST)
    early: list[float] = []
    early_cpus: list[float] = []
    times: list[float] = []
    cpus: list[float] = []
    for i in range(warmup + reloads):
        write_endpoints(cfg, n + i + 1)
        wall, cpu = await timed_reload(ami, asterisk_pid)
        (early if i < warmup else times).append(wall)
        if cpu is not None:
            (early_cpus if i < warmup else cpus).append(cpu)
    # the config really works: one of the endpoints registers
    host, port = cfg.asterisk.sip_server.rsplit(":", 1)
    probe = FLOOR_FIRST + n // 2
    reg = await sipp.register(host, int(port), str(probe), floor_password(probe),
                              realm=cfg.asterisk.sip_realm, timeout=10)
    result = {
        "n": n,
        "first_load_s": round(first_s, 4),
        "reload_s": round(median(times) or 0.0, 4),
        "reloads_s": [round(t, 4) for t in times],
        "first_load_cpu_s": None if first_cpu is None else round(first_cpu, 3),
        "reload_cpu_s": None if not cpus else round(median(cpus) or 0.0, 3),
        "reloads_cpu_s": [round(c, 3) for c in cpus],
        "warmup_reloads_s": [round(t, 4) for t in early],
        "warmup_reloads_cpu_s": [round(c, 3) for c in early_cpus],
        # what the floor would be without the warm-up: the first `reloads` reloads
        "reload_early_s": round(median((early + times)[:reloads]) or 0.0, 4),
        "empty_reload_s": round(empty_s, 4),
        "endpoints_loaded": ours,
        "register_ok": reg.ok,
    }
    stage(f"floor N={n}: first load {first_s:.3f} s, {len(early)} warm-up reloads "
          f"({', '.join(f'{t:.2f}' for t in early)}), then reload median {result['reload_s']:.3f} s "
          f"(of {len(times)}: {', '.join(f'{t:.2f}' for t in times)}), Asterisk CPU per reload "
          f"{result['reload_cpu_s']} s, {ours} endpoints loaded, register "
          f"{'ok' if reg.ok else 'FAILED'}")
    clear_endpoints(cfg)
    return result
