"""Configuration: one TOML file, secrets overridable from the environment.

Every key has a default here and is documented in config.example.toml, so a missing
file still gives a working development setup (embedded PostgreSQL, local PBX).

The sections are pydantic dataclasses: a value of the wrong type, an unknown key or a
value Asterisk would misread (a context with a space, an unknown codec, a realm with a
`;`) is refused when the file loads, with a message naming the key, so `sipprov serve`
refuses to start instead of failing at every apply. They stay dataclasses, so
`dataclasses.replace(cfg.section, key=value)` works and validates too. Assignment to a
field is not validated (tests tweak settings in place).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass

from sipprov.i18n import Language

DEFAULT_STATE_DIR = Path(os.environ.get("SIPPROV_STATE_DIR", "/var/lib/sipprov"))
DEFAULT_PBX_ROOT = Path(os.environ.get("SIPPROV_PBX_ROOT", "/var/cache/sipprov/asterisk-root"))

# Strict: TOML gives real types, so "80" for a port or 1 for a flag is a mistake to
# name, not to coerce. Unknown keys are refused (a typo must not be silently ignored).
_SECTION = ConfigDict(strict=True, extra="forbid")
# Paths come from TOML as strings: accept str -> Path.
LaxPath = Annotated[Path, Field(strict=False)]

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0)]

# Asterisk section and context names (Asterisk keeps 79 bytes of a context name).
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,78}")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?")
# Digest realms end up in `realm=` lines and in every stored HA1: keep them plain.
_REALM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}")
_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
# Node names (status, node_state rows, env variable names) and sites (written into
# res_pgsql.conf's dbappname and compared in SQL): plain words.
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
SITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
# The name of the one node a config without [[asterisk.nodes]] describes.
DEFAULT_NODE = "default"
# The codecs chan_pjsip knows in Asterisk 22 (`core show codecs`), plus `all`.
KNOWN_CODECS = frozenset({
    "all", "ulaw", "alaw", "gsm", "g722", "g723", "g726", "g726aal2", "g729", "g719",
    "adpcm", "ilbc", "lpc10", "speex", "speex16", "speex32", "siren7", "siren14", "opus",
    "silk", "silk8", "silk12", "silk16", "silk24", "codec2", "slin", "slin12", "slin16",
    "slin24", "slin32", "slin44", "slin48", "slin96", "slin192", "testlaw",
    "h261", "h263", "h263p", "h264", "h265", "mpeg4", "vp8", "vp9", "av1",
    "jpeg", "png", "t140", "t140red",
})
_RESERVED_CONTEXTS = frozenset({"general", "globals"})
# The outbound context also names `<outbound_context>-dial`.
_DIAL_SUFFIX = "-dial"


class ConfigError(ValueError):
    """The configuration file is wrong; the message names the key."""


def _no_control(value: str, what: str) -> str:
    """Operator text that reaches a config line: no line break, control or format character."""
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        raise ValueError(f"{what} may not contain line breaks or control characters")
    return value


def _host(value: str) -> str:
    """A hostname or an IP address (v6 without brackets)."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a hostname or IP address")
    return value


def _absolute(value: Path | None) -> Path | None:
    if value is None:
        return None
    _no_control(str(value), "a path")
    if not value.is_absolute():
        raise ValueError(f"must be an absolute path, not {str(value)!r}")
    return value


@dataclass(config=_SECTION)
class HttpConfig:
    host: str = "127.0.0.1"
    port: Port = 8080
    # Largest request body accepted (avatars are up to 8 MB).
    max_body_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024 + 65536
    # How long ?wait=applied waits before answering 202.
    wait_timeout_s: Seconds = 30.0
    # Whether to trust X-Forwarded-For for rate limiting (only behind a proxy you own);
    # the web console then also believes that proxy's X-Forwarded-Proto (Secure cookies).
    trust_forwarded_for: bool = False
    # GET /metrics (Prometheus): false = a bearer token (any role) is needed; true = no
    # token (only where the port is reachable by your monitoring alone).
    metrics_public: bool = False
    # Always mark the web console's cookies Secure (TLS ends at a proxy that sends no
    # X-Forwarded-Proto); otherwise they are Secure when the request came over TLS.
    secure_cookies: bool = False
    # Key of the signed avatar URLs (hex, >= 32 bytes; env SIPPROV_URL_SIGNING_KEY).
    # Empty: a random key per process - links stop working at a restart, and several
    # instances behind one address need the same key.
    url_signing_key: str = ""
    # How long a signed avatar URL works.
    avatar_url_ttl_s: Annotated[int, Field(ge=60)] = 86400

    @field_validator("url_signing_key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        if value:
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise ValueError("must be hex") from None
            if len(raw) < 32:
                raise ValueError("must be at least 32 bytes (64 hex digits)")
        return value

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        return _host(value)


@dataclass(config=_SECTION)
class DatabaseConfig:
    # Empty: start an embedded PostgreSQL in embedded_dir. Env: SIPPROV_DSN.
    dsn: str = ""
    embedded_dir: LaxPath = DEFAULT_STATE_DIR / "pgdata"
    pool_min: Annotated[int, Field(ge=0)] = 2
    pool_max: Annotated[int, Field(ge=1)] = 20
    # Seconds to wait for PostgreSQL to accept a new connection; past it the
    # request answers 503. (Requests waiting for a free pool connection queue.)
    acquire_timeout_s: Seconds = 5.0

    @field_validator("dsn")
    @classmethod
    def _check_dsn(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (or empty for the embedded server)")
        return value

    @field_validator("embedded_dir")
    @classmethod
    def _check_dir(cls, value: Path) -> Path | None:
        return _absolute(value)

    @field_validator("pool_max")
    @classmethod
    def _check_pool(cls, value: int, info: ValidationInfo) -> int:
        if value < info.data.get("pool_min", 0):
            raise ValueError("must be >= database.pool_min")
        return value


def check_site(value: str) -> str:
    """A site name: it goes into res_pgsql.conf (dbappname) and SQL comparisons."""
    if not SITE.fullmatch(value):
        raise ValueError("must be 1-32 letters, digits, _ or - (starting with a letter "
                         f"or digit), not {value!r}")
    return value


@dataclass(config=_SECTION)
class NodeConfig:
    """One Asterisk node of [[asterisk.nodes]]; an empty/0 key takes the [asterisk]
    section's value (ami_user, ami_secret, ...)."""

    name: str
    ami_host: str = ""
    ami_port: Annotated[int, Field(ge=0, le=65535)] = 0
    ami_user: str = ""
    # Env: SIPPROV_NODE_<NAME>_AMI_SECRET (name upper-cased, '-' -> '_').
    ami_secret: str = ""
    # What softphones served by this node register to (host[:port]).
    sip_server: str = ""
    # Empty: the node serves the agents and queues without a site; else those too and
    # the ones of its site.
    site: str = ""
    # Where this node's generated files go (both backends write queues.conf and
    # extensions.conf). Empty: the development PBX instance named like the node.
    config_dir: LaxPath | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not NODE_NAME.fullmatch(value):
            raise ValueError("must be 1-63 letters, digits, _ or - (starting with a "
                             f"letter or digit), not {value!r}")
        return value

    @field_validator("ami_host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        return _host(value) if value else value

    @field_validator("ami_user", "ami_secret")
    @classmethod
    def _check_ami_text(cls, value: str) -> str:
        return _no_control(value, "the value")

    @field_validator("sip_server")
    @classmethod
    def _check_sip_server(cls, value: str) -> str:
        return _sip_server(value) if value else value

    @field_validator("site")
    @classmethod
    def _check_site(cls, value: str) -> str:
        return check_site(value) if value else value

    @field_validator("config_dir")
    @classmethod
    def _check_config_dir(cls, value: Path | None) -> Path | None:
        return _absolute(value)


def _sip_server(value: str) -> str:
    host, port = value, ""
    if value.startswith("["):  # [v6]:port
        host, _, port = value[1:].partition("]")
        port = port.removeprefix(":")
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    _host(host)
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"port {port!r} is not 1-65535")
    return value


@dataclass(config=_SECTION)
class AsteriskConfig:
    # Where sipprov writes its generated files (pjsip.conf, extensions.conf,
    # queues.conf); the operator's files of those names #include them.
    # Empty: the development PBX instance's etc/asterisk/sipprov.
    config_dir: LaxPath | None = None
    ami_host: str = "127.0.0.1"
    ami_port: Port = 5038
    ami_user: str = "sipprov"
    # Env: SIPPROV_AMI_SECRET.
    ami_secret: str = "sipprov-dev-secret"
    ami_timeout_s: Seconds = 30.0
    sip_realm: str = "sipprov"
    # What softphones are told to register to (host[:port]).
    sip_server: str = "127.0.0.1:5070"
    # The PJSIP transport section (the operator's) our endpoints use.
    transport: str = "transport-udp"
    codecs: list[str] = field(default_factory=lambda: ["ulaw", "alaw", "g722", "opus"])
    direct_media: bool = False
    rtp_symmetric: bool = True
    force_rport: bool = True
    rewrite_contact: bool = True
    max_contacts: Annotated[int, Field(ge=1, le=100)] = 1
    remove_existing: bool = True
    # Phones reach Asterisk through a SIP front that adds a Path header (Kamailio,
    # docs/scale-out.md): AORs get support_path=yes, so a call to a phone goes back
    # through the front that received its REGISTER.
    support_path: bool = False
    # Registrations (contacts) in PostgreSQL (asterisk.ps_contacts) instead of each
    # Asterisk's astdb: every node reaches a phone registered through any other
    # (realtime backend only; one PostgreSQL write per REGISTER; docs/scale-out.md).
    shared_contacts: bool = False
    # Dialplan contexts.
    internal_context: str = "sipprov-internal"
    outbound_context: str = "sipprov-outbound"
    # Dial string prefix for outside calls, e.g. "PJSIP/${EXTEN}@trunk"; empty: no trunk.
    outbound_dial: str = ""
    ring_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 30
    # How agents reach Asterisk: "realtime" (Asterisk reads them from PostgreSQL, no
    # reload per change) or "files" (pjsip.conf + reload). docs/apply.md compares them.
    backend: Literal["realtime", "files"] = "realtime"
    # realtime: a sorcery memory cache in front of the database (fewer queries per
    # REGISTER); every change expires its objects over AMI, and when AMI is away an
    # object is stale for at most realtime_cache_lifetime_s.
    realtime_cache: bool = False
    realtime_cache_lifetime_s: Annotated[int, Field(ge=1, le=86400)] = 60
    # The PostgreSQL role Asterisk logs in as (reads only the asterisk.* views).
    realtime_db_user: str = "sipprov_asterisk"
    # Env: SIPPROV_REALTIME_DB_PASSWORD. Empty: generated once into
    # <state dir>/realtime-db-password (mode 0600).
    realtime_db_password: str = ""
    # How Asterisk reaches PostgreSQL: host (or socket folder) and port; empty/0: the
    # ones of database.dsn.
    realtime_db_host: str = ""
    realtime_db_port: Annotated[int, Field(ge=0, le=65535)] = 0
    # Several Asterisk nodes ([[asterisk.nodes]], docs/scale-out.md): each gets every
    # change. Empty: one node, the ami_* keys above.
    nodes: list[NodeConfig] = field(default_factory=list)

    @field_validator("nodes", mode="before")
    @classmethod
    def _parse_nodes(cls, value: Any) -> Any:
        """TOML gives tables: build each NodeConfig, naming the node and key of a fault."""
        if not isinstance(value, list):
            return value
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                out.append(item)
                continue
            try:
                out.append(NodeConfig(**item))
            except ValidationError as exc:
                label = f"[{i}]" + (f" ({item['name']})" if isinstance(item.get("name"), str) else "")
                raise ValueError("; ".join(
                    line.replace("node.", f"node{label}.", 1)
                    for line in describe(exc, "node"))) from None
        return out

    @field_validator("nodes")
    @classmethod
    def _check_nodes(cls, value: list[NodeConfig], info: ValidationInfo) -> list[NodeConfig]:
        names: set[str] = set()
        addresses: dict[tuple[str, int], str] = {}
        folders: dict[Path, str] = {}
        for node in value:
            if node.name.lower() in names:
                raise ValueError(f"two nodes are named {node.name!r}")
            names.add(node.name.lower())
            address = (node.ami_host or info.data.get("ami_host", ""),
                       node.ami_port or info.data.get("ami_port", 0))
            if address in addresses:
                raise ValueError(f"nodes {addresses[address]!r} and {node.name!r} have the "
                                 f"same AMI address {address[0]}:{address[1]}")
            addresses[address] = node.name
            if node.config_dir is not None:
                if node.config_dir in folders:
                    raise ValueError(f"nodes {folders[node.config_dir]!r} and {node.name!r} "
                                     f"write to the same config_dir {node.config_dir}")
                folders[node.config_dir] = node.name
        return value

    @field_validator("realtime_db_user", "realtime_db_password", "realtime_db_host")
    @classmethod
    def _check_realtime_text(cls, value: str, info: ValidationInfo) -> str:
        # written into res_pgsql.conf: one plain word
        if value and not re.fullmatch(r"[A-Za-z0-9_./+@:-]{1,255}", value):
            raise ValueError("must be letters, digits or _ . / + @ : - (it goes into "
                             "res_pgsql.conf)")
        if info.field_name == "realtime_db_user" and not value:
            raise ValueError("may not be empty")
        return value

    @field_validator("config_dir")
    @classmethod
    def _check_config_dir(cls, value: Path | None) -> Path | None:
        return _absolute(value)

    @field_validator("ami_host")
    @classmethod
    def _check_ami_host(cls, value: str) -> str:
        return _host(value)

    @field_validator("ami_user", "ami_secret")
    @classmethod
    def _check_ami_text(cls, value: str) -> str:
        # AMI is a line protocol: a line break would end the action early.
        if not value:
            raise ValueError("may not be empty")
        return _no_control(value, "the value")

    @field_validator("sip_realm")
    @classmethod
    def _check_realm(cls, value: str) -> str:
        if not _REALM.fullmatch(value):
            raise ValueError("must be letters, digits and _ . @ : - (at most 128), e.g. pbx.example.com")
        return value

    @field_validator("sip_server")
    @classmethod
    def _check_sip_server(cls, value: str) -> str:
        return _sip_server(value)

    @field_validator("transport", "internal_context", "outbound_context")
    @classmethod
    def _check_section_name(cls, value: str, info: ValidationInfo) -> str:
        limit = 79 - (len(_DIAL_SUFFIX) if info.field_name == "outbound_context" else 0)
        if not _IDENT.fullmatch(value) or len(value) > limit:
            raise ValueError(f"must be letters, digits, _ . + - (at most {limit}), not {value!r}")
        if value.lower() in _RESERVED_CONTEXTS:
            raise ValueError(f"{value!r} is reserved by Asterisk")
        if info.field_name == "outbound_context" and value == info.data.get("internal_context"):
            raise ValueError("must differ from asterisk.internal_context")
        return value

    @field_validator("codecs")
    @classmethod
    def _check_codecs(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one codec")
        unknown = [c for c in value if c not in KNOWN_CODECS]
        if unknown:
            raise ValueError(f"unknown codec(s) {', '.join(map(repr, unknown))}; "
                             f"Asterisk 22 knows {', '.join(sorted(KNOWN_CODECS))}")
        if len(set(value)) != len(value):
            raise ValueError("lists a codec twice")
        return value

    @field_validator("outbound_dial")
    @classmethod
    def _check_dial(cls, value: str) -> str:
        _no_control(value, "the dial string")
        if ";" in value or len(value) > 1024:
            raise ValueError("may not contain ';' or be longer than 1024 characters")
        return value


@dataclass(config=_SECTION)
class PbxConfig:
    # The development PBX (sipprov pbx up): a Debian-unstable root with Asterisk 22.
    root: LaxPath = DEFAULT_PBX_ROOT
    # Several Asterisk instances can run from one root (the dev PBX, the tests' PBX):
    # each has its own etc/run/log/spool/lib dirs under <root>/srv/sipprov/<instance>.
    instance: str = "dev"
    # Empty: debootstrap's default mirror.
    mirror: str = ""
    suite: str = "sid"
    sip_port: Port = 5070
    boot_timeout_s: Seconds = 60.0
    # The development SIP front (`sipprov pbx front-up`): Kamailio on 127.0.0.1 at this
    # UDP port, dispatching to every node's sip_server (docs/scale-out.md).
    front_port: Port = 5080

    @field_validator("root")
    @classmethod
    def _check_root(cls, value: Path) -> Path | None:
        return _absolute(value)

    @field_validator("instance")
    @classmethod
    def _check_instance(cls, value: str) -> str:
        if not _INSTANCE.fullmatch(value):
            raise ValueError("must be letters, digits and '-'")
        return value

    @field_validator("mirror")
    @classmethod
    def _check_mirror(cls, value: str) -> str:
        if value and not re.fullmatch(r"(https?|file)://\S+", value):
            raise ValueError("must be an http(s):// or file:// URL, or empty")
        return value

    @field_validator("suite")
    @classmethod
    def _check_suite(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,31}", value):
            raise ValueError("must be a Debian suite name such as sid")
        return value

    @property
    def instance_dir(self) -> Path:
        """The instance's folder as the host sees it."""
        return self.root / "srv/sipprov" / self.instance

    @property
    def instance_dir_in_root(self) -> str:
        """The same folder as Asterisk (inside the chroot) sees it."""
        return f"/srv/sipprov/{self.instance}"


@dataclass(config=_SECTION)
class ExtensionsConfig:
    first: Annotated[int, Field(ge=0, le=999999)] = 100
    last: Annotated[int, Field(ge=0, le=999999)] = 999
    reserved: list[int] = field(default_factory=list)
    # A released number rests this long before anyone else gets it (the old phone may
    # still be registered and would ring for the new owner); 0 turns the hold off.
    cooldown_s: Annotated[float, Field(ge=0)] = 86400.0

    @field_validator("last")
    @classmethod
    def _check_range(cls, value: int, info: ValidationInfo) -> int:
        first = info.data.get("first")
        if first is not None and value < first:
            raise ValueError(f"must be >= extensions.first ({first})")
        return value


@dataclass(config=_SECTION)
class SecurityConfig:
    # passlib scheme for web passwords: argon2 or pbkdf2_sha256.
    web_hash_scheme: str = "argon2"
    web_password_min_length: Annotated[int, Field(ge=1)] = 10
    sip_password_min_length: int = 12
    # Failed logins: after `login_free_attempts` failures per login (or per address,
    # times 4) each further try waits; past `login_lockout_attempts` it is refused for
    # `login_lockout_s` seconds.
    login_free_attempts: Annotated[int, Field(ge=0)] = 3
    login_lockout_attempts: Annotated[int, Field(ge=1)] = 10
    login_lockout_s: Annotated[int, Field(ge=0)] = 900
    # Mode of generated Asterisk files (octal string in TOML, e.g. "0640").
    file_mode: int = 0o640

    @field_validator("web_hash_scheme")
    @classmethod
    def _check_scheme(cls, value: str) -> str:
        if value not in ("argon2", "pbkdf2_sha256"):
            raise ValueError("must be argon2 or pbkdf2_sha256")
        return value

    @field_validator("sip_password_min_length")
    @classmethod
    def _check_sip_min(cls, value: int) -> int:
        if value < 12:
            raise ValueError("must be >= 12")
        return value

    @field_validator("file_mode", mode="before")
    @classmethod
    def _parse_mode(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return int(value, 8)
            except ValueError:
                raise ValueError('must be an octal string like "0640"') from None
        return value

    @field_validator("file_mode")
    @classmethod
    def _check_mode(cls, value: int) -> int:
        if not 0 <= value <= 0o777 or value & 0o007:
            raise ValueError("must be a file mode without permissions for others, e.g. \"0640\"")
        return value


@dataclass(config=_SECTION)
class ApplierConfig:
    # Wait this long after a change for more before applying (coalescing).
    debounce_ms: Annotated[int, Field(ge=0)] = 50
    # Retry backoff when Asterisk is away.
    backoff_min_s: Seconds = 0.5
    backoff_max_s: Seconds = 15.0
    verify: bool = True
    # Several `sipprov serve` instances (docs/scale-out.md): one leader applies. This
    # instance's name in /status, /health and /metrics (empty: hostname:pid).
    instance_name: str = ""
    # A follower tries to take the lease this often (takeover after the leader dies).
    leader_poll_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    # The leader confirms its lease this often, and steps down when it could not for
    # leader_lease_s (cut off from PostgreSQL), before PostgreSQL frees the lease.
    leader_check_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    leader_lease_s: Annotated[float, Field(ge=1, le=600)] = 3.0

    @field_validator("instance_name")
    @classmethod
    def _check_instance(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,48}", value):
            raise ValueError("must be 1-48 letters, digits, _ . : @ -")
        return value

    @field_validator("leader_lease_s")
    @classmethod
    def _check_lease(cls, value: float, info: ValidationInfo) -> float:
        if value <= info.data.get("leader_check_s", 0):
            raise ValueError("must be longer than leader_check_s")
        return value


@dataclass(config=_SECTION)
class SmtpConfig:
    # Empty host: credential e-mails are disabled.
    host: str = ""
    port: Port = 25
    sender: str = "sipprov@localhost"
    starttls: bool = False
    username: str = ""
    # Env: SIPPROV_SMTP_PASSWORD.
    password: str = ""
    timeout_s: Seconds = 10.0

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        return _host(value) if value else value


@dataclass(config=_SECTION)
class DefaultsConfig:
    # Language of a user created without one (pl, vi or en): their credentials e-mail
    # and web console speak it.
    language: Language = "en"


@dataclasses.dataclass(frozen=True)
class Node:
    """One Asterisk node as the applier drives it: its own AMI settings (an
    AsteriskConfig with the node's ami_*/sip_server), its site and its files' folder."""

    name: str
    site: str | None
    asterisk: AsteriskConfig
    config_dir: Path


def node_secret_env(name: str) -> str:
    """The environment variable that overrides a node's ami_secret."""
    return f"SIPPROV_NODE_{re.sub(r'[^A-Z0-9]', '_', name.upper())}_AMI_SECRET"


@dataclass(config=_SECTION)
class Config:
    http: HttpConfig = field(default_factory=HttpConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    asterisk: AsteriskConfig = field(default_factory=AsteriskConfig)
    pbx: PbxConfig = field(default_factory=PbxConfig)
    extensions: ExtensionsConfig = field(default_factory=ExtensionsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    applier: ApplierConfig = field(default_factory=ApplierConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    defaults: DefaultsConfig = field(default_factory=DefaultsConfig)

    @property
    def generated_dir(self) -> Path:
        """Where generated Asterisk files go (host path)."""
        if self.asterisk.config_dir:
            return Path(self.asterisk.config_dir)
        return self.pbx.instance_dir / "etc/asterisk/sipprov"

    @property
    def nodes(self) -> list[Node]:
        """Every Asterisk node: [[asterisk.nodes]], or the one the [asterisk] keys name."""
        ast = self.asterisk
        if not ast.nodes:
            return [Node(DEFAULT_NODE, None, ast, Path(self.generated_dir))]
        out = []
        for n in ast.nodes:
            settings = dataclasses.replace(
                ast, nodes=[], ami_host=n.ami_host or ast.ami_host,
                ami_port=n.ami_port or ast.ami_port, ami_user=n.ami_user or ast.ami_user,
                ami_secret=n.ami_secret or ast.ami_secret,
                sip_server=n.sip_server or ast.sip_server)
            folder = (Path(n.config_dir) if n.config_dir else
                      self.pbx.root / "srv/sipprov" / n.name / "etc/asterisk/sipprov")
            out.append(Node(n.name, n.site or None, settings, folder))
        return out

    def validate(self) -> None:
        """Check the whole configuration again (after in-place changes), and that the
        renderer accepts the Asterisk settings: a bad value fails here, at start."""
        from_dict({name: dataclasses.asdict(section) for name, section in self._sections()})
        from sipprov.apply import render  # the renderer's own wall, same rules

        try:
            render.Settings.from_config(self.asterisk)
        except render.UnsafeValueError as exc:
            raise ConfigError(str(exc)) from None

    def _sections(self) -> list[tuple[str, Any]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]


SECTIONS: dict[str, Any] = {f.name: f.default_factory for f in dataclasses.fields(Config)}

ENV_OVERRIDES = {
    "SIPPROV_DSN": ("database", "dsn"),
    "SIPPROV_AMI_SECRET": ("asterisk", "ami_secret"),
    "SIPPROV_SMTP_PASSWORD": ("smtp", "password"),
    "SIPPROV_URL_SIGNING_KEY": ("http", "url_signing_key"),
    "SIPPROV_REALTIME_DB_PASSWORD": ("asterisk", "realtime_db_password"),
}


def describe(exc: ValidationError, section: str) -> list[str]:
    """One line per problem, each starting with the dotted key (`asterisk.codecs: ...`)."""
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"] if not isinstance(part, int)]
        key = ".".join([section, *loc[:1]])
        kind = err["type"]
        if kind == "unexpected_keyword_argument":
            lines.append(f"{key}: unknown key")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if kind.endswith("_type") or kind.endswith("_parsing"):
            msg += f" (got {type(err['input']).__name__} {err['input']!r})"
        lines.append(f"{key}: {msg}")
    return lines


def from_dict(data: Mapping[str, Any]) -> Config:
    """Build and validate a Config from parsed TOML; ConfigError names every bad key."""
    sections: dict[str, Any] = {}
    problems: list[str] = []
    for name, table in data.items():
        if name not in SECTIONS:
            problems.append(f"unknown section [{name}]")
        elif not isinstance(table, dict):
            problems.append(f"[{name}] must be a table")
        else:
            try:
                sections[name] = SECTIONS[name](**table)
            except ValidationError as exc:
                problems.extend(describe(exc, name))
    if problems:
        raise ConfigError("; ".join(problems))
    return Config(**sections)


def load(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the TOML file (if any), apply SIPPROV_* environment overrides, validate."""
    env = os.environ if env is None else env
    path = path or env.get("SIPPROV_CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            table = data.setdefault(section, {})
            if isinstance(table, dict):
                table[key] = env[var]
    ast = data.get("asterisk")
    nodes = ast.get("nodes") if isinstance(ast, dict) else None
    for node in nodes if isinstance(nodes, list) else ():
        if isinstance(node, dict) and isinstance(node.get("name"), str):
            secret = env.get(node_secret_env(node["name"]))
            if secret:
                node["ami_secret"] = secret
    cfg = from_dict(data)
    cfg.validate()
    return cfg
