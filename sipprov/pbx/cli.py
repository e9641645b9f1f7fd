"""`sipprov pbx up|down|status|build`: what the command prints and its exit code."""

from __future__ import annotations

import sys
import time

from sipprov.config import Config
from sipprov.pbx.build import build_root
from sipprov.pbx.errors import PbxError
from sipprov.pbx.instance import PbxStatus, start, status, stop


def _print_status(st: PbxStatus) -> None:
    print(f"instance:  {st.instance}")
    print(f"root:      {st.root} ({'built' if st.root_built else 'not built'})")
    print(f"asterisk:  {st.version or '-'}")
    print(f"running:   {f'yes, pid {st.pid}' if st.running else 'no'}")
    print(f"AMI:       127.0.0.1:{st.ami_port}")
    print(f"SIP (UDP): 127.0.0.1:{st.sip_port}")


def pbx_main(cfg: Config, action: str) -> int:
    """`sipprov pbx up|down|status|build`: human output, exit code 0 on success."""
    try:
        if action == "build":
            build_root(cfg.pbx, progress=True)
            _print_status(status(cfg))
        elif action == "up":
            t0 = time.monotonic()
            start(cfg)
            st = status(cfg)
            _print_status(st)
            print(f"up in {time.monotonic() - t0:.1f} s; generated files: {cfg.generated_dir}")
        elif action == "down":
            stop(cfg)
            print(f"PBX instance {cfg.pbx.instance!r} stopped")
        elif action == "status":
            st = status(cfg)
            _print_status(st)
            return 0 if st.running else 3
        else:
            print(f"unknown pbx action {action!r} (up, down, status, build)", file=sys.stderr)
            return 2
    except PbxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
