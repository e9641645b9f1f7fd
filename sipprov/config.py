"""Configuration: one TOML file, secrets overridable from the environment.

Every key has a default here and is documented in config.example.toml, so a missing
file still gives a working development setup (embedded PostgreSQL, local PBX).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = Path(os.environ.get("SIPPROV_STATE_DIR", "/var/lib/sipprov"))
DEFAULT_PBX_ROOT = Path(os.environ.get("SIPPROV_PBX_ROOT", "/var/cache/sipprov/asterisk-root"))


class ConfigError(ValueError):
    """The configuration file is wrong; the message names the key."""


@dataclass
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Largest request body accepted (avatars are up to 8 MB).
    max_body_bytes: int = 8 * 1024 * 1024 + 65536
    # How long ?wait=applied waits before answering 202.
    wait_timeout_s: float = 30.0
    # Whether to trust X-Forwarded-For for rate limiting (only behind a proxy you own).
    trust_forwarded_for: bool = False


@dataclass
class DatabaseConfig:
    # Empty: start an embedded PostgreSQL in embedded_dir. Env: SIPPROV_DSN.
    dsn: str = ""
    embedded_dir: Path = DEFAULT_STATE_DIR / "pgdata"
    pool_min: int = 2
    pool_max: int = 20
    # Seconds to wait for PostgreSQL to accept a new connection; past it the
    # request answers 503. (Requests waiting for a free pool connection queue.)
    acquire_timeout_s: float = 5.0


@dataclass
class AsteriskConfig:
    # Where sipprov writes its generated files (pjsip.conf, extensions.conf,
    # queues.conf); the operator's files of those names #include them.
    # Empty: the development PBX instance's etc/asterisk/sipprov.
    config_dir: Path | None = None
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    ami_user: str = "sipprov"
    # Env: SIPPROV_AMI_SECRET.
    ami_secret: str = "sipprov-dev-secret"
    ami_timeout_s: float = 30.0
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
    max_contacts: int = 1
    remove_existing: bool = True
    # Dialplan contexts.
    internal_context: str = "sipprov-internal"
    outbound_context: str = "sipprov-outbound"
    # Dial string prefix for outside calls, e.g. "PJSIP/${EXTEN}@trunk"; empty: no trunk.
    outbound_dial: str = ""
    ring_timeout_s: int = 30


@dataclass
class PbxConfig:
    # The development PBX (sipprov pbx up): a Debian-unstable root with Asterisk 22.
    root: Path = DEFAULT_PBX_ROOT
    # Several Asterisk instances can run from one root (the dev PBX, the tests' PBX):
    # each has its own etc/run/log/spool/lib dirs under <root>/srv/sipprov/<instance>.
    instance: str = "dev"
    # Empty: debootstrap's default mirror.
    mirror: str = ""
    suite: str = "sid"
    sip_port: int = 5070
    boot_timeout_s: float = 60.0

    @property
    def instance_dir(self) -> Path:
        """The instance's folder as the host sees it."""
        return self.root / "srv/sipprov" / self.instance

    @property
    def instance_dir_in_root(self) -> str:
        """The same folder as Asterisk (inside the chroot) sees it."""
        return f"/srv/sipprov/{self.instance}"


@dataclass
class ExtensionsConfig:
    first: int = 100
    last: int = 999
    reserved: list[int] = field(default_factory=list)


@dataclass
class SecurityConfig:
    # passlib scheme for web passwords: argon2 or pbkdf2_sha256.
    web_hash_scheme: str = "argon2"
    web_password_min_length: int = 10
    sip_password_min_length: int = 12
    # Failed logins: after `login_free_attempts` failures per login (or per address,
    # times 4) each further try waits; past `login_lockout_attempts` it is refused for
    # `login_lockout_s` seconds.
    login_free_attempts: int = 3
    login_lockout_attempts: int = 10
    login_lockout_s: int = 900
    # Mode of generated Asterisk files (octal string in TOML, e.g. "0640").
    file_mode: int = 0o640


@dataclass
class ApplierConfig:
    # Wait this long after a change for more before applying (coalescing).
    debounce_ms: int = 50
    # Retry backoff when Asterisk is away.
    backoff_min_s: float = 0.5
    backoff_max_s: float = 15.0
    verify: bool = True


@dataclass
class SmtpConfig:
    # Empty host: credential e-mails are disabled.
    host: str = ""
    port: int = 25
    sender: str = "sipprov@localhost"
    starttls: bool = False
    username: str = ""
    # Env: SIPPROV_SMTP_PASSWORD.
    password: str = ""
    timeout_s: float = 10.0


@dataclass
class Config:
    http: HttpConfig = field(default_factory=HttpConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    asterisk: AsteriskConfig = field(default_factory=AsteriskConfig)
    pbx: PbxConfig = field(default_factory=PbxConfig)
    extensions: ExtensionsConfig = field(default_factory=ExtensionsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    applier: ApplierConfig = field(default_factory=ApplierConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)

    @property
    def generated_dir(self) -> Path:
        """Where generated Asterisk files go (host path)."""
        if self.asterisk.config_dir:
            return Path(self.asterisk.config_dir)
        return self.pbx.instance_dir / "etc/asterisk/sipprov"

    def validate(self) -> None:
        ext = self.extensions
        if not (0 <= ext.first <= ext.last):
            raise ConfigError("extensions.first must be <= extensions.last")
        if ext.last > 99999:
            raise ConfigError("extensions.last must have at most 5 digits")
        if self.security.web_hash_scheme not in ("argon2", "pbkdf2_sha256"):
            raise ConfigError("security.web_hash_scheme must be argon2 or pbkdf2_sha256")
        if not self.pbx.instance.replace("-", "").isalnum():
            raise ConfigError("pbx.instance must be letters, digits and '-'")
        if self.security.sip_password_min_length < 12:
            raise ConfigError("security.sip_password_min_length must be >= 12")


ENV_OVERRIDES = {
    "SIPPROV_DSN": ("database", "dsn"),
    "SIPPROV_AMI_SECRET": ("asterisk", "ami_secret"),
    "SIPPROV_SMTP_PASSWORD": ("smtp", "password"),
}


def _coerce(section: str, key: str, default: Any, value: Any) -> Any:
    name = f"{section}.{key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false")
        return value
    if key == "file_mode":
        if isinstance(value, str):
            try:
                return int(value, 8)
            except ValueError as exc:
                raise ConfigError(f"{name} must be an octal string like \"0640\"") from exc
        return int(value)
    if isinstance(default, Path) or key.endswith("_dir"):
        return Path(value) if value else None
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{name} must be a list")
        return value
    if not isinstance(value, type(default)):
        raise ConfigError(f"{name} must be of type {type(default).__name__}")
    return value


def from_dict(data: dict[str, Any]) -> Config:
    cfg = Config()
    for section, values in data.items():
        if not hasattr(cfg, section):
            raise ConfigError(f"unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table")
        sub = getattr(cfg, section)
        known = {f.name for f in dataclasses.fields(sub)}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown key {section}.{key}")
            setattr(sub, key, _coerce(section, key, getattr(sub, key), value))
    return cfg


def load(path: Path | str | None = None, env: dict[str, str] | None = None) -> Config:
    """Load the TOML file (if any), then apply SIPPROV_* environment overrides."""
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
    cfg = from_dict(data)
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            setattr(getattr(cfg, section), key, env[var])
    cfg.validate()
    return cfg
