"""A small in-process SIP REGISTER client (UDP, digest MD5 or SHA-256, RFC 3261/7616).

For measuring: a SIPp process per REGISTER costs ~117 ms by itself and hides what is
measured (create-to-registrable is milliseconds with the realtime backend). One
client = one UDP socket; REGISTERs are matched to answers by Call-ID, so many can be in
flight at once (a storm).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from dataclasses import dataclass

_AUTH = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]+))')
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass(frozen=True)
class RegisterAnswer:
    status: int         # final status (200, 401, 403, ...; 0: no answer in time)
    elapsed_s: float    # first REGISTER sent -> final answer
    algorithm: str = ""  # the digest algorithm used

    @property
    def ok(self) -> bool:
        return self.status == 200


def _h(algorithm: str, text: str) -> str:
    return _HASHES[algorithm](text.encode()).hexdigest()


def _challenges(message: str) -> dict[str, dict[str, str]]:
    """algorithm -> parameters of each WWW-Authenticate: Digest header."""
    found: dict[str, dict[str, str]] = {}
    for line in message.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() != "www-authenticate":
            continue
        value = value.strip()
        if not value.lower().startswith("digest "):
            continue
        params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                  for m in _AUTH.finditer(value[7:])}
        found[params.get("algorithm", "MD5").upper()] = params
    return found


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: SipClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client._received(data.decode("utf-8", "replace"))


class SipClient:
    """`await SipClient.open(host, port)`, then `await client.register(user, password)`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.local_port = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._waiting: dict[str, asyncio.Future[str]] = {}

    @classmethod
    async def open(cls, host: str, port: int) -> SipClient:
        client = cls(host, port)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(client), local_addr=("127.0.0.1", 0), remote_addr=(host, port))
        client._transport = transport
        client.local_port = transport.get_extra_info("sockname")[1]
        return client

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _received(self, text: str) -> None:
        m = re.search(r"^(?:Call-ID|i)\s*:\s*(\S+)", text, re.M | re.I)
        cseq = re.search(r"^CSeq\s*:\s*(\d+)", text, re.M | re.I)
        status = re.match(r"SIP/2.0 (\d{3})", text)
        if not m or not cseq or not status or int(status.group(1)) < 200:
            return  # provisional (100 Trying) or not an answer
        fut = self._waiting.pop(f"{m.group(1)} {cseq.group(1)}", None)
        if fut is not None and not fut.done():
            fut.set_result(text)

    def _request(self, user: str, call_id: str, cseq: int, expires: int, tag: str,
                 auth: str = "") -> bytes:
        uri = f"sip:{self.host}:{self.port}"
        branch = "z9hG4bK" + secrets.token_hex(8)
        lines = [
            f"REGISTER {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.local_port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{self.host}>;tag={tag}",
            f"To: <sip:{user}@{self.host}>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} REGISTER",
            f"Contact: <sip:{user}@127.0.0.1:{self.local_port}>",
            f"Expires: {expires}",
            "User-Agent: sipprov-sipclient",
        ]
        if auth:
            lines.append(auth)
        lines += ["Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()

    async def _send(self, data: bytes, key: str, timeout: float) -> str | None:
        assert self._transport is not None, "open() first"
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[key] = fut
        deadline = time.monotonic() + timeout
        resend = 0.5  # RFC 3261 timer A, UDP
        try:
            while True:
                self._transport.sendto(data)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), min(resend, left))
                except TimeoutError:
                    resend = min(resend * 2, 4.0)
        finally:
            self._waiting.pop(key, None)
            fut.cancel()

    async def register(self, user: str, password: str, *, expires: int = 600,
                       algorithm: str = "MD5", timeout: float = 5.0) -> RegisterAnswer:
        """REGISTER, answer the digest challenge of `algorithm`; the final status."""
        t0 = time.monotonic()
        call_id = secrets.token_hex(12) + "@sipprov"
        tag = secrets.token_hex(6)
        first = await self._send(self._request(user, call_id, 1, expires, tag),
                                 f"{call_id} 1", timeout)
        if first is None:
            return RegisterAnswer(0, time.monotonic() - t0)
        status = int(first[8:11])
        if status != 401:
            return RegisterAnswer(status, time.monotonic() - t0)
        challenge = _challenges(first).get(algorithm)
        if challenge is None:
            return RegisterAnswer(401, time.monotonic() - t0, algorithm)
        realm, nonce = challenge.get("realm", ""), challenge.get("nonce", "")
        uri = f"sip:{self.host}:{self.port}"
        ha1 = _h(algorithm, f"{user}:{realm}:{password}")
        ha2 = _h(algorithm, f"REGISTER:{uri}")
        cnonce, nc = secrets.token_hex(8), "00000001"
        if "auth" in challenge.get("qop", "").split(","):
            response = _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            qop = f',qop=auth,nc={nc},cnonce="{cnonce}"'
        else:
            response = _h(algorithm, f"{ha1}:{nonce}:{ha2}")
            qop = ""
        opaque = f',opaque="{challenge["opaque"]}"' if "opaque" in challenge else ""
        auth = (f'Authorization: Digest username="{user}",realm="{realm}",nonce="{nonce}",'
                f'uri="{uri}",response="{response}",algorithm={algorithm}{qop}{opaque}')
        second = await self._send(self._request(user, call_id, 2, expires, tag, auth),
                                  f"{call_id} 2", max(0.1, timeout - (time.monotonic() - t0)))
        if second is None:
            return RegisterAnswer(0, time.monotonic() - t0, algorithm)
        return RegisterAnswer(int(second[8:11]), time.monotonic() - t0, algorithm)
