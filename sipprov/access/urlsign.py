"""Signed URLs: a link that works without a bearer token, for a limited time, for one
path only - so an `<img src>` in a web page can show an agent's uploaded avatar.

The signature is HMAC-SHA256 over the path and the expiry time with the server's key
(`http.url_signing_key`, else a random key per process); it is checked in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class UrlSigner:
    key: bytes = field(repr=False)
    ttl_s: int = 86400
    clock: Callable[[], float] = time.time

    @classmethod
    def from_config(cls, hex_key: str, ttl_s: int) -> UrlSigner:
        return cls(bytes.fromhex(hex_key) if hex_key else os.urandom(32), ttl_s)

    def _mac(self, path: str, expires: int) -> str:
        return hmac.new(self.key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str) -> str:
        """`path?expires=<unix time>&sig=<hex>`. The expiry is rounded up to the hour so
        the same avatar keeps the same URL for a while (browsers cache it)."""
        expires = (int(self.clock()) + self.ttl_s + 3599) // 3600 * 3600
        return f"{path}?expires={expires}&sig={self._mac(path, expires)}"

    def valid(self, path: str, expires: str | None, sig: str | None) -> bool:
        if not expires or not sig or not expires.isascii() or not expires.isdigit() or len(expires) > 12:
            return False
        if int(expires) < self.clock() or len(sig) != 64 or not sig.isascii():
            return False
        return hmac.compare_digest(self._mac(path, int(expires)), sig)
