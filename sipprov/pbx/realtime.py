"""The development PBX's side of the realtime backend: how the chrooted Asterisk reaches
sipprov's PostgreSQL, and its extconfig.conf / res_pgsql.conf / sorcery.conf.

The embedded PostgreSQL listens only on a unix socket outside the root, so the socket's
folder is bind-mounted into the instance (<instance>/pgsocket) while it runs; a TCP DSN
is used as it is. The instance always maps both sorcery wizards (pjsip.conf, then the
realtime views), so it serves either backend and a switch needs no restart.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sipprov.apply import realtimeconf
from sipprov.config import Config
from sipprov.pbx.errors import PbxError
from sipprov.pbx.paths import _etc, write_atomic
from sipprov.pbx.procfs import _is_mountpoint

SOCKET_MOUNT = "pgsocket"
PRIVATE = 0o600


def _dsn(cfg: Config) -> str | None:
    """The database Asterisk reads: database.dsn, else (realtime backend) the embedded
    server `sipprov serve` uses; None: files backend without a DSN (no realtime)."""
    if cfg.database.dsn:
        return cfg.database.dsn
    if cfg.asterisk.backend != "realtime":
        return None
    from sipprov.db import database  # the embedded server, only when no DSN is set

    return database.resolve_dsn(cfg.database)


def _mount_socket(cfg: Config, folder: str) -> str:
    """Bind the socket folder into the instance; the path Asterisk sees."""
    target = cfg.pbx.instance_dir / SOCKET_MOUNT
    target.mkdir(parents=True, exist_ok=True)
    if _is_mountpoint(target):
        if os.path.samefile(target, folder):
            return f"{cfg.pbx.instance_dir_in_root}/{SOCKET_MOUNT}"
        release_socket(cfg)  # another PostgreSQL (tests): bind the new folder
    res = subprocess.run(["mount", "--bind", folder, str(target)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise PbxError(f"cannot bind the PostgreSQL socket folder into the PBX root: "
                       f"{res.stderr.strip()}")
    return f"{cfg.pbx.instance_dir_in_root}/{SOCKET_MOUNT}"


def release_socket(cfg: Config) -> None:
    """Undo _mount_socket (the instance has stopped)."""
    target = cfg.pbx.instance_dir / SOCKET_MOUNT
    if target.exists() and _is_mountpoint(target):
        res = subprocess.run(["umount", str(target)], capture_output=True)
        if res.returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
        # the folder is PostgreSQL's (often its data folder): nothing may delete the
        # instance folder while it is still mounted there
        if _is_mountpoint(target):
            raise PbxError(f"cannot unmount {target}")


def write_realtime_config(cfg: Config, dsn: str | None = None, site: str | None = None) -> None:
    """extconfig.conf, res_pgsql.conf (0600: it holds the role's password), sorcery.conf.

    `dsn`: the database Asterisk reads (default: database.dsn or the embedded server).
    Tests point the instance at each test's database with this, then reload
    res_config_pgsql.so. `site`: the instance is a node of that site (dbappname).
    """
    dsn = dsn or _dsn(cfg)
    etc = _etc(cfg.pbx)
    if dsn is None:
        # pjsip.conf only (the default mapping); switching to realtime needs a restart
        write_atomic(etc / "sorcery.conf", "")
        write_atomic(etc / "extconfig.conf", "")
        return
    password = realtimeconf.db_password(cfg)
    host, _port, _db = realtimeconf.dsn_parts(dsn)
    mounted = None
    if not cfg.asterisk.realtime_db_host and host.startswith("/"):
        mounted = _mount_socket(cfg, host)
    link = realtimeconf.db_link(cfg, dsn, password, host=mounted)
    write_atomic(etc / "extconfig.conf", realtimeconf.extconfig_conf())
    write_atomic(etc / "res_pgsql.conf", realtimeconf.res_pgsql_conf(link, site=site), PRIVATE)
    write_atomic(etc / "sorcery.conf", realtimeconf.sorcery_conf(cfg, with_files=True))


def socket_mount(cfg: Config) -> Path:
    return cfg.pbx.instance_dir / SOCKET_MOUNT
