"""Facts about the machine and the versions measured, for results.json."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001 - informational
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def busy_processes() -> list[str]:
    """Other heavy programs running now (the machine is shared: say so in the results)."""
    found: dict[str, int] = {}
    me = os.getpid()
    try:
        import psutil

        for proc in psutil.process_iter(["pid", "name", "cmdline"]):
            if proc.info["pid"] == me:
                continue
            name = proc.info["name"] or ""
            cmd = " ".join(proc.info["cmdline"] or [])
            if name == "asterisk":
                key = "asterisk"
            elif "pytest" in cmd:
                key = "pytest"
            elif name == "postgres" and "-D" in cmd:
                key = "postgres (server)"
            elif name == "sipp":
                key = "sipp"
            else:
                continue
            found[key] = found.get(key, 0) + 1
    except Exception:  # noqa: BLE001 - informational
        return []
    return [f"{k} x{v}" for k, v in sorted(found.items())]


def machine() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "hostname": platform.node(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "cpu_model": _cpu_model(),
        "ram_bytes": _ram_bytes(),
        "kernel": platform.release(),
        "os": platform.platform(),
    }


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def sipp_version() -> str | None:
    path = shutil.which("sipp")
    if not path:
        return None
    try:
        res = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"SIPp\s+v?([0-9][^\s,]*)", res.stdout + res.stderr)
    return m.group(1) if m else None


def versions(asterisk: str | None, postgresql: str | None) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "sipprov": _version("sipprov"),
        "asterisk": asterisk,
        "postgresql": postgresql,
        "sipp": sipp_version(),
        "aiohttp": _version("aiohttp"),
        "asyncpg": _version("asyncpg"),
        "panoramisk": _version("panoramisk"),
        "jinja2": _version("Jinja2"),
    }


def _status_kib(pid: int | str, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory(pid: int | str = "self") -> dict[str, int | None]:
    """Resident now (VmRSS) and peak resident (VmHWM), in bytes."""
    rss = _status_kib(pid, "VmRSS")
    hwm = _status_kib(pid, "VmHWM")
    return {
        "rss_bytes": rss * 1024 if rss is not None else None,
        "peak_bytes": hwm * 1024 if hwm is not None else None,
    }


def reset_peak(pid: int | str = "self") -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of a process (Linux >= 4.0, own or root)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int | str | None) -> float | None:
    """User + system CPU time a process has used so far (all its threads), seconds."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
