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
from sipprov import sipp
from sipprov.ami import AmiClient
from sipprov.config import Config

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


async def timed_reload(ami: AmiClient) -> float:
    t0 = time.perf_counter()
    await ami.reload("res_pjsip.so")
    return time.perf_counter() - t0


async def measure(cfg: Config, ami: AmiClient, n: int, reloads: int) -> dict[str, Any]:
    """First load of N endpoints (from none), then `reloads` reloads of N+1, N+2, ..."""
    clear_endpoints(cfg)
    empty_s = await timed_reload(ami)
    write_endpoints(cfg, n)
    first_s = await timed_reload(ami)
    loaded = await ami.pjsip_endpoints()
    ours = sum(1 for name in loaded if name.isdigit() and int(name) >= FLOOR_FIRST)
    times: list[float] = []
    for i in range(reloads):
        write_endpoints(cfg, n + i + 1)
        times.append(await timed_reload(ami))
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
        "empty_reload_s": round(empty_s, 4),
        "endpoints_loaded": ours,
        "register_ok": reg.ok,
    }
    stage(f"floor N={n}: first load {first_s:.3f} s, reload median {result['reload_s']:.3f} s "
          f"(of {len(times)}), {ours} endpoints loaded, register {'ok' if reg.ok else 'FAILED'}")
    return result


async def measure_all(cfg: Config, ami: AmiClient, ns: list[int], reloads: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in ns:
        stage(f"floor N={n}: writing {n} endpoints and reloading res_pjsip.so {reloads + 1} times")
        out[str(n)] = await measure(cfg, ami, n, reloads)
    clear_endpoints(cfg)
    await ami.reload("res_pjsip.so")
    return out
