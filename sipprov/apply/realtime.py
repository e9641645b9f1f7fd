"""What the applier does for Asterisk's realtime view of the agents, and what both
backends do when credentials go away.

Realtime backend: Asterisk reads endpoints, auths, AORs and queue members from the
asterisk.* views (migration 005), so an agent change writes no file and reloads no
module. The applier still records versions and verifies over AMI; with the sorcery
memory cache it expires exactly the changed objects before a version counts as applied.

Both backends: a rotated SIP password, a deleted or deactivated agent ends the phone's
registration at once (its contacts are removed), so the old credentials stop receiving
calls without waiting for the registration to expire.
"""

from __future__ import annotations

import dataclasses
import logging

import asyncpg

from sipprov.apply import realtimeconf
from sipprov.apply import render as render_mod
from sipprov.apply.ami import AmiClient, AmiError
from sipprov.apply.errors import NotVerified, Unavailable
from sipprov.config import Config
from sipprov.db.sql import contacts as contacts_sql
from sipprov.db.sql import realtime as realtime_sql

log = logging.getLogger(__name__)


def view_settings(cfg: Config, enabled: bool) -> realtime_sql.ViewSettings:
    """The views read the same checked settings the renderer writes into files."""
    rendered = render_mod.Settings.from_config(cfg.asterisk)
    shared = {f.name: getattr(rendered, f.name) for f in dataclasses.fields(realtime_sql.ViewSettings)
              if f.name != "enabled"}
    return realtime_sql.ViewSettings(enabled=enabled, **shared)


async def prepare(conn: asyncpg.Connection, cfg: Config) -> bool:
    """Realtime backend, before an apply: the views' settings from the configuration,
    views on, and the role's login. True when the settings row changed."""
    changed = await realtime_sql.update_settings(conn, view_settings(cfg, True))
    try:
        password = realtimeconf.db_password(cfg)
        if not await realtime_sql.set_role_login(conn, cfg.asterisk.realtime_db_user,
                                                 password):
            log.warning("PostgreSQL role %s does not exist: Asterisk cannot read the "
                        "agents (docs/apply.md)", cfg.asterisk.realtime_db_user)
    except asyncpg.InsufficientPrivilegeError:
        log.info("no CREATEROLE: the password of %s is the operator's to set",
                 cfg.asterisk.realtime_db_user)
    except OSError as exc:
        log.warning("cannot read or create the realtime database password: %s", exc)
    return changed


async def disable_views(conn: asyncpg.Connection, cfg: Config) -> bool:
    """Files backend, once its files are live: the views go empty (an Asterisk mapping
    both wizards then sees each agent once). True when they were on."""
    return await realtime_sql.update_settings(conn, view_settings(cfg, False))


async def expire_cache(ami: AmiClient, cfg: Config, extensions: set[int] | None) -> None:
    """Expire the endpoint, auth and AOR of these extensions (None: everything) from
    the sorcery memory cache, so the next REGISTER reads the database."""
    if not cfg.asterisk.realtime_cache:
        return
    for cache in realtimeconf.CACHE_NAMES.values():
        if extensions is None:
            await ami.sorcery_expire(cache)
            continue
        for ext in sorted(extensions):
            await ami.sorcery_expire(cache, str(ext))


# Up to this many AORs have their contacts looked up one by one.
ONE_BY_ONE_MAX = 50


async def end_registrations(ami: AmiClient, extensions: set[int],
                            devstate: bool = False,
                            db: asyncpg.Connection | None = None) -> int:
    """Remove the contacts of these AORs: their phones stop receiving calls now.
    devstate: also mark their Custom device state unavailable (realtime queue members).
    db: the registrations are shared (asterisk.ps_contacts): delete the rows there,
    which ends them on every node at once. Returns how many contacts were removed."""
    if not extensions:
        return 0
    names = {str(e) for e in extensions}
    removed = 0
    if db is not None:
        removed = await contacts_sql.delete_for_aors(db, sorted(names))
    elif len(names) <= ONE_BY_ONE_MAX:
        # each AOR's own contacts (astdb keys `contact/<aor>;@<hash>`): a listing of
        # every registration (PJSIPShowContacts) costs O(registered phones) per apply
        for name in sorted(names):
            for object_name in await ami.astdb_contacts(name):
                await ami.remove_contact(object_name)
                removed += 1
    else:
        for contact in await ami.pjsip_contacts():
            if contact.get("Aor") in names:
                await ami.remove_contact(contact["ObjectName"])
                removed += 1
    if devstate:
        for ext in sorted(extensions):
            await ami.set_device_state(f"Custom:sipprov{ext}", "UNAVAILABLE")
    if removed:
        log.info("ended %d registration(s) of %d agent(s) whose credentials went away",
                 removed, len(extensions))
    return removed


async def end_gone_registrations(ami: AmiClient, gone: set[int], devstate: bool = False,
                                 db: asyncpg.Connection | None = None) -> set[int]:
    """After a snapshot is live: end the registrations of these agents (their
    credentials went away: AgentChanges.credentials_gone); errors as the applier's."""
    try:
        await end_registrations(ami, gone, devstate, db)
    except asyncpg.PostgresError as exc:
        raise Unavailable(f"database: ending registrations: {exc}") from exc
    except AmiError as exc:
        if not ami.connected:
            raise Unavailable(str(exc)) from exc
        raise NotVerified(f"ending registrations: {exc}") from exc
    return gone
