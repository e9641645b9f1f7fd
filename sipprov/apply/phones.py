"""What the phones are doing, from Asterisk's AMI events: who is registered (contact,
user agent, since when) and who is on a call; and, for the realtime backend, the
device state app_queue rings by.

Why sipprov keeps a device state at all (realtime backend only): Asterisk tracks the
state of `PJSIP/<ext>` only for AORs its options code already knows, and the first
time it meets a new AOR it loads EVERY endpoint (res_pjsip/pjsip_options.c,
sip_options_aor_observer_modified_task): O(N), measured ~1.8 s at 10,000 agents,
stalling other REGISTERs meanwhile. Every Asterisk-side trigger (`pjsip reload qualify
endpoint`, qualify_frequency, ARI dynamic config of the AOR) goes through that path,
so an agent created after Asterisk started would stay Unavailable to app_queue or
cost O(N) per create. Instead the realtime queue members use
`state_interface=Custom:sipprov<ext>` (asterisk.queue_members), and this tracker
sets it (func_devstate, AMI Setvar DEVICE_STATE) from registration and channel
events: O(1) per event. While sipprov is down the Custom states keep their last
value (Asterisk stores them in astdb); on reconnect everything is synchronised again.

Registrations: Asterisk's ContactStatus events come only for endpoints it knew at
load (the same trap), so every successful digest authentication (the SuccessfulAuth
security event: a REGISTER, a refresh, an unregister or a call) makes the tracker
ask for that one endpoint's contacts (PJSIPShowEndpoint), shortly after and once more
a moment later (the contact is stored after the authentication). Coalesced per
extension, one action at a time: a registration storm delays what is shown, never
Asterisk. Expired registrations disappear at the next resynchronisation (RESYNC_S).
The manager user needs `read = ...,security` for this (docs/apply.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sipprov.apply.ami import AmiClient, AmiError
from sipprov.config import Config

log = logging.getLogger(__name__)

CUSTOM_PREFIX = "Custom:sipprov"
_CHANNEL = re.compile(r"^PJSIP/(\d{1,6})-[0-9a-f]+$")
_EXT = re.compile(r"^\d{1,6}$")
# The whole picture is read again this often (a missed event cannot last).
RESYNC_S = 60.0
# After an authentication: ask for the endpoint's contacts after these delays.
REFRESH_AFTER_S = (0.15, 1.5)
# At most this many endpoints asked per second: every PJSIPShowEndpoint is several
# realtime queries on res_config_pgsql's ONE connection, which REGISTERs need too
# (measured: refreshing every authentication starved a 500/s storm). Beyond it the
# tracker lags, and when more are waiting than that it reads the whole picture once
# (one PJSIPShowContacts) instead.
REFRESH_PER_S = 20


@dataclass(frozen=True)
class Registration:
    """One registered contact of an agent's AOR."""

    uri: str
    user_agent: str
    # When sipprov first saw it (a contact registered before sipprov started: when it
    # started watching); None from a one-off listing (registrations_now).
    since: datetime | None
    expires_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"contact": self.uri, "user_agent": self.user_agent,
                "since": self.since.isoformat() if self.since else None,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None}


def _expires(value: str | None) -> datetime | None:
    try:
        stamp = int(value or "")
    except ValueError:
        return None
    return datetime.fromtimestamp(stamp, UTC) if stamp > 0 else None


def device_state(registered: bool, channel_states: list[str]) -> str:
    """The Custom device state for an agent's phone."""
    if any(s == "Up" for s in channel_states):
        return "INUSE"
    if any(s in ("Ringing", "Ring") for s in channel_states):
        return "RINGING"
    if channel_states:
        return "INUSE"
    return "NOT_INUSE" if registered else "UNAVAILABLE"


class PhoneTracker:
    """Started by the service; `registrations(ext)` and `registered_count()` answer
    from memory."""

    def __init__(self, cfg: Config,
                 ami_factory: Callable[[], AmiClient] | None = None) -> None:
        self.cfg = cfg
        self.ami_factory = ami_factory or (
            lambda: AmiClient(cfg.asterisk, events="system,call,security"))
        self.devstate = cfg.asterisk.backend == "realtime"
        self._contacts: dict[str, dict[str, Registration]] = {}  # aor -> object -> reg
        self._channels: dict[str, tuple[str, str]] = {}          # channel -> (aor, state)
        self._set: dict[str, str] = {}                           # aor -> state last set
        self._ami: AmiClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._dirty: set[str] = set()
        self._refresh: dict[str, float] = {}  # aor -> when to ask for its contacts
        self._last_refresh = 0.0
        self._resync_at = float("inf")
        self._wake = asyncio.Event()
        self._stopping = False
        self.connected = False

    # ------------------------------------------------------------------ queries

    def registrations(self, extension: int | str) -> list[Registration]:
        return sorted(self._contacts.get(str(extension), {}).values(),
                      key=lambda r: r.since or datetime.min.replace(tzinfo=UTC))

    def registered_count(self) -> int:
        return sum(1 for regs in self._contacts.values() if regs)

    def forget(self, extensions: set[int]) -> None:
        """Their contacts were removed by sipprov (credentials went away)."""
        for ext in extensions:
            self._contacts.pop(str(ext), None)
            self._mark(str(ext))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="sipprov-phones")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # the loop also ends on _stopping, should a cancellation be swallowed
            await asyncio.wait({task}, timeout=10)
        await self._close()

    async def _close(self) -> None:
        ami, self._ami = self._ami, None
        self.connected = False
        if ami is not None:
            with contextlib.suppress(Exception):
                await ami.close()

    async def _run(self) -> None:
        delay = 0.5
        while not self._stopping:
            try:
                await self._connect_and_sync()
                delay = 0.5
                await self._follow()
            except (AmiError, OSError) as exc:
                log.info("phone tracker: AMI away (%s); retrying in %.1f s", exc, delay)
            await self._close()
            if not self._stopping:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
            delay = min(delay * 2, 15.0)

    async def _connect_and_sync(self) -> None:
        ami = self.ami_factory()
        await ami.connect()
        self._ami = ami
        manager = ami._manager
        assert manager is not None
        manager.register_event("ContactStatus", self._on_contact)
        manager.register_event("SuccessfulAuth", self._on_auth)
        for name in ("Newchannel", "Newstate", "Hangup"):
            manager.register_event(name, self._on_channel)
        await self._sync(ami)
        self.connected = True

    async def _sync(self, ami: AmiClient) -> None:
        """Read every contact and channel, then put every state right."""
        now = datetime.now(UTC)
        contacts: dict[str, dict[str, Registration]] = {}
        for c in await ami.pjsip_contacts():
            aor = c.get("Aor", "")
            if not _EXT.match(aor):
                continue
            old = self._contacts.get(aor, {}).get(c.get("ObjectName", ""))
            contacts.setdefault(aor, {})[c.get("ObjectName", "")] = Registration(
                uri=c.get("Uri", ""), user_agent=c.get("UserAgent", ""),
                since=old.since if old else now,
                expires_at=_expires(c.get("ExpirationTime")))
        channels: dict[str, tuple[str, str]] = {}
        answer = await ami.send({"Action": "CoreShowChannels"})
        for m in answer[1:] if isinstance(answer, list) else []:
            if m.get("Event") == "CoreShowChannel":
                match = _CHANNEL.match(str(m.get("Channel", "")))
                if match:
                    channels[str(m.get("Channel"))] = (
                        match.group(1), str(m.get("ChannelStateDesc", "")))
        touched = set(self._contacts) | set(contacts) | set(self._set)
        touched |= {aor for aor, _ in channels.values()}
        self._contacts, self._channels = contacts, channels
        if self.devstate:
            touched |= await self._known_custom_states(ami)
            self._set.clear()
        self._dirty |= touched
        await self._flush(ami)

    async def _known_custom_states(self, ami: AmiClient) -> set[str]:
        """Extensions with a Custom:sipprov state from earlier runs (so a phone that
        unregistered while sipprov was away does not stay NOT_INUSE)."""
        try:
            out = await ami.command("devstate list")
        except AmiError:
            return set()
        return set(re.findall(r"Custom:sipprov(\d{1,6})'", out))

    async def _follow(self) -> None:
        """Push changed states as events arrive; resynchronise now and then."""
        ami = self._ami
        assert ami is not None
        next_sync = time.monotonic() + RESYNC_S
        while ami.connected and not self._stopping:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            if time.monotonic() >= min(next_sync, self._resync_at):
                await self._sync(ami)
                next_sync = time.monotonic() + RESYNC_S
                self._resync_at = float("inf")
            else:
                await self._refresh_due(ami)
                await self._flush(ami)
        raise AmiError("AMI connection lost")

    # ------------------------------------------------------------------ events

    def _mark(self, aor: str) -> None:
        self._dirty.add(aor)
        self._wake.set()

    def _on_contact(self, _manager: Any, event: Any) -> None:
        aor = str(event.get("AOR") or "")
        uri = str(event.get("URI") or "")
        if not _EXT.match(aor):
            return
        status = str(event.get("ContactStatus") or "")
        regs = self._contacts.setdefault(aor, {})
        key = next((k for k, r in regs.items() if r.uri == uri), f"{aor};@{uri}")
        if status == "Removed":
            regs.pop(key, None)
        else:
            old = regs.get(key)
            regs[key] = Registration(
                uri=uri, user_agent=str(event.get("UserAgent") or (old.user_agent if old else "")),
                since=old.since if old else datetime.now(UTC),
                expires_at=_expires(str(event.get("RegExpire") or ""))
                or (old.expires_at if old else None))
        if not regs:
            self._contacts.pop(aor, None)
        self._mark(aor)

    def _on_auth(self, _manager: Any, event: Any) -> None:
        if str(event.get("Service") or "") != "PJSIP":
            return
        aor = str(event.get("AccountID") or "")
        if _EXT.match(aor):
            now = time.monotonic()
            for delay in REFRESH_AFTER_S:
                self._refresh.setdefault(f"{aor}@{delay}", now + delay)
            self._wake.set()

    async def _refresh_due(self, ami: AmiClient) -> None:
        """Ask for the contacts of the extensions whose time has come."""
        now = time.monotonic()
        if len({k.split("@", 1)[0] for k in self._refresh}) > REFRESH_PER_S * 5:
            # a storm: one listing later beats thousands of lookups now
            self._refresh.clear()
            self._resync_at = min(self._resync_at, now + 5.0)
            return
        budget = max(1, int(REFRESH_PER_S * max(0.05, now - self._last_refresh)))
        self._last_refresh = now
        due = sorted((k for k, at in self._refresh.items() if at <= now),
                     key=lambda k: self._refresh[k])
        aors: list[str] = []
        for key in due:
            aor = key.split("@", 1)[0]
            if aor not in aors and len(aors) >= budget:
                continue
            self._refresh.pop(key, None)
            if aor not in aors:
                aors.append(aor)
        for aor in aors:
            found = await ami.pjsip_endpoint_contacts(aor)
            old = self._contacts.get(aor, {})
            regs = {
                c.get("ID", ""): Registration(
                    uri=c.get("URI", ""), user_agent=c.get("UserAgent", ""),
                    since=old[c.get("ID", "")].since if c.get("ID", "") in old
                    else datetime.now(UTC),
                    expires_at=_expires(c.get("RegExpire")))
                for c in found}
            if regs:
                self._contacts[aor] = regs
            else:
                self._contacts.pop(aor, None)
            self._mark(aor)
        if self._refresh:
            # wake up again when the next one is due
            asyncio.get_running_loop().call_later(
                max(0.0, min(self._refresh.values()) - time.monotonic()), self._wake.set)

    def _on_channel(self, _manager: Any, event: Any) -> None:
        name = str(event.get("Channel") or "")
        match = _CHANNEL.match(name)
        if not match:
            return
        aor = match.group(1)
        if event.get("Event") == "Hangup":
            self._channels.pop(name, None)
        else:
            self._channels[name] = (aor, str(event.get("ChannelStateDesc") or ""))
        self._mark(aor)

    async def _flush(self, ami: AmiClient) -> None:
        if not self.devstate:
            self._dirty.clear()
            return
        dirty, self._dirty = self._dirty, set()
        for aor in sorted(dirty):
            states = [s for a, s in self._channels.values() if a == aor]
            state = device_state(bool(self._contacts.get(aor)), states)
            if self._set.get(aor) == state:
                continue
            await ami.set_device_state(f"{CUSTOM_PREFIX}{aor}", state)
            self._set[aor] = state


async def registrations_now(cfg: Config, extension: int, timeout: float = 3.0
                            ) -> list[Registration] | None:
    """One-off (the CLI): the contacts of one AOR over AMI; None if AMI is unreachable."""
    ast = dataclasses.replace(cfg.asterisk, ami_timeout_s=timeout)
    try:
        async with AmiClient(ast) as ami:
            contacts = await ami.pjsip_contacts()
    except (AmiError, OSError):
        return None
    return [Registration(uri=c.get("Uri", ""), user_agent=c.get("UserAgent", ""), since=None,
                         expires_at=_expires(c.get("ExpirationTime")))
            for c in contacts if c.get("Aor") == str(extension)]
