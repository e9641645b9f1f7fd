"""The realtime verifier never asks Asterisk for all endpoints: with sorcery.conf's
allow_unqualified_fetch=no Asterisk lists none of the realtime agents (and listing
them all was O(N^2) in Asterisk: docs/apply.md, "Start-up with many agents"). It asks
a spread sample of them one by one instead."""

from __future__ import annotations

import pytest

from sipprov.apply import verify
from sipprov.apply.errors import NotVerified
from sipprov.apply.snapshot import AgentConf, Snapshot


class _Ami:
    """PJSIPShowEndpoint answers for `loaded`; a listing is a test failure."""

    connected = True

    def __init__(self, loaded: set[int]) -> None:
        self.loaded = {str(e) for e in loaded}
        self.asked: list[str] = []

    async def pjsip_endpoint_exists(self, name: str) -> bool:
        self.asked.append(name)
        return name in self.loaded

    async def pjsip_endpoints(self) -> set[str]:
        raise AssertionError("the realtime verifier listed every endpoint")


def _snap(extensions: range) -> Snapshot:
    agents = [AgentConf(id=e, extension=e, caller_id_name=f"A {e}", ha1_md5="0" * 32,
                        ha1_sha256=None, realm=None, outbound_allowed=False,
                        outbound_number=None, mute_mic=False, autologin_phone=False,
                        priority=0) for e in extensions]
    return Snapshot(version=1, agents=agents, queues=[])


def test_spread_keeps_first_and_last_and_caps() -> None:
    assert verify._spread({3, 1, 2}) == [1, 2, 3]
    many = verify._spread(set(range(1000, 101000)))
    assert len(many) == verify.VERIFY_ONE_BY_ONE_MAX == len(set(many))
    assert many[0] == 1000 and many[-1] == 100999 and many == sorted(many)


async def test_first_realtime_verify_asks_a_sample_not_a_listing() -> None:
    snap = _snap(range(1000, 11000))
    ami = _Ami(set(range(1000, 11000)))
    verifier = verify.Verifier(realtime=True)
    await verifier._endpoints(ami, snap, force=False)  # type: ignore[arg-type]
    assert len(ami.asked) == verify.VERIFY_ONE_BY_ONE_MAX
    assert {"1000", "10999"} <= set(ami.asked)


async def test_realtime_verify_finds_agents_asterisk_cannot_read() -> None:
    # Asterisk reads none of them (wrong database, role without rights): refused
    verifier = verify.Verifier(realtime=True)
    with pytest.raises(NotVerified, match="missing in Asterisk"):
        await verifier._endpoints(_Ami(set()), _snap(range(1000, 1200)), force=True)  # type: ignore[arg-type]
