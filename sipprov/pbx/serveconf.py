"""A config file for `sipprov serve` against one development PBX instance.

The browser tests and the screenshot command both start a real `sipprov serve` next to a
PBX instance they started themselves; this writes the one TOML both need, so a new
setting reaches both.
"""

from __future__ import annotations

import json

from sipprov.config import Config


def serve_toml(cfg: Config, dsn: str, port: int, extra: str = "") -> str:
    """TOML for `sipprov serve` on `dsn` and HTTP `port`, writing into cfg's PBX instance
    with cfg's backend; `extra` is appended (more sections)."""
    a, p = cfg.asterisk, cfg.pbx
    return (
        f"[http]\nhost = \"127.0.0.1\"\nport = {port}\n"
        f"[database]\ndsn = {json.dumps(dsn)}\npool_min = 1\npool_max = 6\n"
        "[asterisk]\n"
        f"config_dir = {json.dumps(str(cfg.generated_dir))}\n"
        f"ami_port = {a.ami_port}\nsip_server = {json.dumps(a.sip_server)}\nami_timeout_s = 15.0\n"
        f"backend = {json.dumps(a.backend)}\n"
        f"[pbx]\nroot = {json.dumps(str(p.root))}\ninstance = {json.dumps(p.instance)}\n"
        f"sip_port = {p.sip_port}\n"
        f"[extensions]\nfirst = {cfg.extensions.first}\nlast = {cfg.extensions.last}\n"
        "[applier]\nbackoff_min_s = 0.1\nbackoff_max_s = 1.0\n" + extra
    )
