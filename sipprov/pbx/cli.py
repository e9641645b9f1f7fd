"""`sipprov pbx up|down|status|build|front-up|front-down|front-status`: what the
command prints and its exit code."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sipprov.config import Config
from sipprov.pbx import front
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


def front_folder(cfg: Config) -> Path:
    """Its pid file, log, dispatcher list and control socket (one folder per port)."""
    return cfg.pbx.instance_dir.parent / f"front-{cfg.pbx.front_port}"


def _front_nodes(cfg: Config) -> list[front.Node]:
    """Every node's SIP address (sip_server: host[:port], 5060 when no port)."""
    found = []
    for node in cfg.nodes:
        host, _, port = node.asterisk.sip_server.rpartition(":")
        if not host or not port.isdigit():
            host, port = node.asterisk.sip_server, "5060"
        found.append(front.Node(host, int(port)))
    return found


def front_main(cfg: Config, action: str) -> int:
    """The development SIP front (Kamailio) in front of every node."""
    folder = front_folder(cfg)
    port = cfg.pbx.front_port
    current = front.running(folder, port=port)
    if action == "front-up":
        if current is None:
            current = front.start(folder, port, _front_nodes(cfg))
        print(f"SIP front (Kamailio) on udp 127.0.0.1:{port}, pid {current.pid}")
        action = "front-status"
    if action == "front-down":
        if current is not None:
            front.stop(current)
        print("SIP front stopped")
        return 0
    if current is None:
        print("SIP front: not running")
        return 3
    for uri, flags in sorted(front.destinations(current).items()):
        state = "active" if flags.startswith("A") else "inactive"
        print(f"node {uri}: {state} ({flags})")
    return 0


def pbx_main(cfg: Config, action: str) -> int:
    """`sipprov pbx up|down|status|build`: human output, exit code 0 on success."""
    try:
        if action.startswith("front-"):
            return front_main(cfg, action)
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
            print(f"unknown pbx action {action!r} (up, down, status, build, front-up, "
                  "front-down, front-status)", file=sys.stderr)
            return 2
    except PbxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
