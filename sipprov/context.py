"""What a running sipprov holds: handed to the HTTP layer so handlers reach the
service layer and the applier without globals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from sipprov.config import Config

if TYPE_CHECKING:
    from sipprov.apply.applier import Applier
    from sipprov.apply.phones import PhoneTracker


@dataclass
class Services:
    cfg: Config
    pool: asyncpg.Pool
    # None when the service runs without Asterisk (e.g. some tests); then
    # ?wait=applied answers 202 at once and status reports Asterisk as not connected.
    applier: Applier | None = None
    # Registrations and phone states from AMI events (None: not watched).
    phones: PhoneTracker | None = None
