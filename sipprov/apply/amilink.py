"""The applier's AMI connection: connected on demand, only once Asterisk has booted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sipprov.apply.ami import AmiClient, AmiError
from sipprov.apply.errors import Unavailable
from sipprov.config import AsteriskConfig

log = logging.getLogger(__name__)

AmiFactory = Callable[[], AmiClient]


class AmiLink:
    """Hands out a logged-in AmiClient, reconnecting when the last one dropped."""

    def __init__(self, cfg: AsteriskConfig, factory: AmiFactory | None = None,
                 connect_timeout_s: float | None = None) -> None:
        self.cfg = cfg
        # Connecting and logging in may take this long (None: asterisk.ami_timeout_s).
        self.connect_timeout_s = connect_timeout_s
        self.factory: AmiFactory = factory or (lambda: AmiClient(cfg))
        self.client: AmiClient | None = None
        self.asterisk_version: str | None = None
        # its systemname (the reg_server of the registrations it took; None: unknown)
        self.system_name: str | None = None

    @property
    def connected(self) -> bool:
        return bool(self.client is not None and self.client.connected)

    async def get(self) -> AmiClient:
        """A connected client to a fully booted Asterisk, or Unavailable."""
        if self.client is not None and self.client.connected:
            return self.client
        await self.close()
        client = self.factory()
        try:
            if self.connect_timeout_s is None:
                await client.connect()
            else:
                await asyncio.wait_for(client.connect(), self.connect_timeout_s)
        except TimeoutError:
            with contextlib.suppress(Exception):
                await client.close()
            raise Unavailable(f"AMI at {self.cfg.ami_host}:{self.cfg.ami_port}: no login "
                              f"within {self.connect_timeout_s:g} s") from None
        except AmiError as exc:
            with contextlib.suppress(Exception):
                await client.close()
            raise Unavailable(str(exc)) from exc
        except OSError as exc:
            raise Unavailable(f"AMI: {exc}") from exc
        try:
            # AMI answers while Asterisk still boots; a reload then is only queued and
            # queries are refused ("Permission denied"): wait for the end of the boot.
            await client.command("core waitfullybooted")
        except AmiError as exc:
            with contextlib.suppress(Exception):
                await client.close()
            raise Unavailable(f"Asterisk is not fully booted: {exc}") from exc
        self.client = client
        try:
            self.asterisk_version, self.system_name = await client.core_settings()
        except Exception as exc:  # informational only
            log.debug("could not read the Asterisk version: %s", exc)
        log.info("AMI connected to %s:%s (Asterisk %s)", self.cfg.ami_host,
                 self.cfg.ami_port, self.asterisk_version or "?")
        return client

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
