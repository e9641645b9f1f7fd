"""The Asterisk configuration the realtime backend needs: extconfig.conf, res_pgsql.conf,
sorcery.conf and the modules to load. Used by the development PBX (its base config) and
by `sipprov asterisk realtime-config` (what an operator adds to their own Asterisk).

Pure text from settings; the connection settings come from database.dsn unless
asterisk.realtime_db_host/port say how Asterisk reaches PostgreSQL.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from sipprov import secretfile
from sipprov.config import DEFAULT_STATE_DIR, Config, check_site

# Loaded after res_pjsip's own modules (order does not matter with autoload=no and
# explicit load lines; Asterisk resolves dependencies).
MODULES = (
    "res_config_pgsql.so",
    "res_sorcery_realtime.so",
    "res_sorcery_memory_cache.so",
    "res_pjsip_pubsub.so",
    "func_realtime.so",
)

# Sorcery object type -> the realtime family (view) it is read from.
FAMILIES = {"endpoint": "ps_endpoints", "auth": "ps_auths", "aor": "ps_aors"}
QUEUE_FAMILIES = ("queue_members", "queues")
# Registrations, when shared between nodes (asterisk.shared_contacts): the one
# relation Asterisk writes (migration 013).
CONTACTS_FAMILY = "ps_contacts"
# The memory cache names, one per object type: AMI SorceryMemoryCacheExpireObject
# takes one of these.
CACHE_NAMES = {"endpoint": "sipprov_endpoint", "auth": "sipprov_auth", "aor": "sipprov_aor"}

PASSWORD_FILE = "realtime-db-password"
_SAFE = re.compile(r"[A-Za-z0-9_./+@:-]{1,255}")


class RealtimeConfigError(ValueError):
    """A connection setting cannot be written into res_pgsql.conf safely."""


@dataclass(frozen=True)
class DbLink:
    """How Asterisk connects: a TCP host or a socket folder (host starting with '/')."""

    host: str
    port: int
    dbname: str
    user: str
    password: str

    @property
    def is_socket(self) -> bool:
        return self.host.startswith("/")


def _safe(name: str, value: str) -> str:
    if not _SAFE.fullmatch(value):
        raise RealtimeConfigError(
            f"{name} must be 1-255 letters, digits or _ . / + @ : - (it goes into "
            "res_pgsql.conf)")
    return value


def dsn_parts(dsn: str) -> tuple[str, int, str]:
    """(host or socket folder, port, dbname) of a postgresql:// DSN."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or ""])[0] or "/var/run/postgresql"
    port = int(query.get("port", [parts.port or 5432])[0])
    dbname = unquote(parts.path.lstrip("/")) or query.get("dbname", ["postgres"])[0]
    return unquote(host), port, dbname


def db_password(cfg: Config, state_dir: Path = DEFAULT_STATE_DIR) -> str:
    """asterisk.realtime_db_password, else one generated once and kept (0600)."""
    if cfg.asterisk.realtime_db_password:
        return cfg.asterisk.realtime_db_password
    path = state_dir / PASSWORD_FILE
    try:
        return path.read_text("utf-8").strip()
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    try:
        with secretfile.create_private(path) as fh:
            fh.write(password + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except FileExistsError:  # another process made it first
        return path.read_text("utf-8").strip()
    return password


def db_link(cfg: Config, dsn: str, password: str, host: str | None = None) -> DbLink:
    """The connection Asterisk uses; `host` overrides (the dev PBX's socket mount)."""
    dsn_host, dsn_port, dbname = dsn_parts(dsn)
    ast = cfg.asterisk
    return DbLink(
        host=_safe("the database host", host or ast.realtime_db_host or dsn_host),
        port=int(ast.realtime_db_port or dsn_port),
        dbname=_safe("the database name", dbname),
        user=_safe("asterisk.realtime_db_user", ast.realtime_db_user),
        password=_safe("asterisk.realtime_db_password", password),
    )


def extconfig_conf() -> str:
    lines = ["[settings]"]
    lines += [f"{family} => pgsql,general" for family in FAMILIES.values()]
    lines += [f"{family} => pgsql,general" for family in QUEUE_FAMILIES]
    lines.append(f"{CONTACTS_FAMILY} => pgsql,general")
    return "\n".join(lines) + "\n"


def app_name(site: str | None) -> str:
    """res_pgsql.conf's dbappname for a node of `site`: the realtime views serve such a
    session the agents and queues of that site too (asterisk.node_site(), migration
    015). The site was checked when the configuration loaded; checked again here."""
    if site is None:
        return ""
    return "sipprov-site:" + check_site(site)


def res_pgsql_conf(link: DbLink, show_password: bool = True, site: str | None = None) -> str:
    where = (f"dbsock = {link.host}\n" if link.is_socket else f"dbhost = {link.host}\n")
    appname = f"dbappname = {app_name(site)}\n" if site else ""
    return (
        "[general]\n"
        f"{where}{appname}"
        f"dbport = {link.port}\n"
        f"dbname = {link.dbname}\n"
        f"dbuser = {link.user}\n"
        f"dbpass = {link.password if show_password else '<password>'}\n"
        "; the views have only the columns sipprov sets: do not ask to add others\n"
        "requirements = warn\n"
    )


def sorcery_conf(cfg: Config, with_files: bool = True) -> str:
    """[res_pjsip]: the agents from the realtime views, with an optional memory cache;
    with asterisk.shared_contacts the registrations in asterisk.ps_contacts.

    with_files: pjsip.conf's objects first (the files backend's agents, when it is the
    one in use; the realtime views are empty then), so one Asterisk serves both
    backends and switching needs no restart.
    """
    ast = cfg.asterisk
    lines = ["[res_pjsip]"]
    for kind, family in FAMILIES.items():
        if with_files:
            lines.append(f"{kind} = config,pjsip.conf,criteria=type={kind}")
        if ast.realtime_cache:
            lines.append(
                f"{kind}/cache = memory_cache,object_lifetime_maximum="
                f"{int(ast.realtime_cache_lifetime_s)},expire_on_reload=yes,"
                f"name={CACHE_NAMES[kind]}")
        # no "all objects" query: res_pjsip's start-up and reloads would load every
        # agent several times (docs/apply.md, "Start-up with many agents")
        lines.append(f"{kind} = realtime,{family},allow_unqualified_fetch=no")
    if ast.shared_contacts:
        # every node reads and writes the same registrations (default: astdb)
        lines.append(f"contact = realtime,{CONTACTS_FAMILY}")
    return "\n".join(lines) + "\n"


def modules_conf_lines() -> str:
    return "".join(f"load => {m}\n" for m in MODULES)


def operator_config(cfg: Config, link: DbLink, show_password: bool = False,
                    with_files: bool = False, site: str | None = None) -> str:
    """Everything `sipprov asterisk realtime-config` prints, file by file."""
    where = (f"the socket folder {link.host}" if link.is_socket
             else f"{link.host}:{link.port}")
    return (
        f"; Asterisk reads sipprov's agents from PostgreSQL ({where}, database "
        f"{link.dbname})\n"
        f"; as the read-only role {link.user} (docs/apply.md, \"Backends\").\n\n"
        "; --- extconfig.conf\n" + extconfig_conf() + "\n"
        "; --- res_pgsql.conf (mode 0600: it holds the role's password)\n"
        + res_pgsql_conf(link, show_password, site) + "\n"
        "; --- sorcery.conf\n" + sorcery_conf(cfg, with_files=with_files) + "\n"
        "; --- modules.conf ([modules]; with autoload = yes they load anyway)\n"
        + modules_conf_lines() + "load => func_devstate.so\n"
        + ("load => res_pjsip_path.so\n" if cfg.asterisk.support_path else "") + "\n"
        "; --- pjsip.conf [global]: endpoints are named by extension only; without this\n"
        "; every REGISTER also looks up <ext>@<domain> in the database, a miss that no\n"
        "; cache keeps (docs/benchmarks.md, REGISTER storm)\n"
        "; disable_multi_domain = yes\n\n"
        "; --- manager.conf: sipprov's AMI user also reads security events\n"
        "; (registrations of agents created after Asterisk started)\n"
        f"; [{cfg.asterisk.ami_user}]\n"
        "; read = system,call,command,reporting,config,agent,user,originate,security\n"
    )
