"""The renderer, pure and fast: exact sections and keys of the three files (read back
with a parser of Asterisk's syntax), determinism, the per-agent cache, and hostile
values fed straight to it (bypassing the service's validation) in every field."""

from __future__ import annotations

import dataclasses
import random

import pytest

from sipprov.apply import render as render_mod
from sipprov.apply.render import UnsafeValueError, render
from sipprov.apply.snapshot import AgentConf, QueueConf, QueueMemberConf, Snapshot
from sipprov.config import Config
from tests.asterisk_conf import ConfFile, parse_bytes

MD5 = "5f4dcc3b5aa765d61d8327deb882cf99"
SHA = "a" * 64


def agent(ext: int, **kw) -> AgentConf:
    base = dict(
        id=ext,
        extension=ext,
        caller_id_name=f"a.agent{ext}",
        ha1_md5=MD5,
        ha1_sha256=SHA,
        realm="sipprov",
        outbound_allowed=False,
        outbound_number=None,
        mute_mic=False,
        autologin_phone=False,
        priority=1,
    )
    base.update(kw)
    return AgentConf(**base)


def sample() -> Snapshot:
    agents = [
        agent(101, caller_id_name="j.kowalski", mute_mic=True),
        agent(102, outbound_allowed=True, outbound_number="+48221234567", autologin_phone=True),
        agent(103, outbound_allowed=True, outbound_number=None, ha1_sha256=None, realm=None),
    ]
    queues = [
        QueueConf(1, "support", "ringall", 500, (
            QueueMemberConf(102, 0, "a.agent102"), QueueMemberConf(101, 2, "j.kowalski"),
        )),
        QueueConf(2, "sales", "rrmemory", None, ()),
    ]
    return Snapshot(version=7, agents=agents, queues=queues)


@pytest.fixture
def pure_cfg() -> Config:
    c = Config()
    c.asterisk.backend = "files"
    c.asterisk.outbound_dial = "PJSIP/${EXTEN}@trunk"
    return c


def parsed(out: dict[str, bytes]) -> dict[str, ConfFile]:
    assert set(out) == {"pjsip.conf", "extensions.conf", "queues.conf"}
    files = {name: parse_bytes(data) for name, data in out.items()}
    for name, conf in files.items():
        assert conf.directives == [], name
        assert conf.preamble == [], name
    return files


# ----------------------------------------------------------------------------- structure


def test_pjsip_sections_and_keys(pure_cfg: Config) -> None:
    pj = parsed(render(sample(), pure_cfg))["pjsip.conf"]
    assert [(s.name, s.one("type")) for s in pj.sections] == [
        (str(e), t) for e in (101, 102, 103) for t in ("endpoint", "auth", "aor")
    ]
    ep101, auth101, aor101 = pj.sections[0:3]
    assert ep101.keys() == [
        "type", "transport", "context", "disallow", "allow", "direct_media", "rtp_symmetric",
        "force_rport", "rewrite_contact", "auth", "aors", "callerid", "set_var", "set_var",
    ]
    assert ep101.one("transport") == "transport-udp"
    assert ep101.one("context") == "sipprov-internal"
    assert ep101.one("allow") == "ulaw,alaw,g722,opus"
    assert ep101.one("disallow") == "all"
    assert (ep101.one("direct_media"), ep101.one("rtp_symmetric"), ep101.one("force_rport"),
            ep101.one("rewrite_contact")) == ("no", "yes", "yes", "yes")
    assert ep101.one("auth") == ep101.one("aors") == "101"
    assert ep101.one("callerid") == '"j.kowalski" <101>'
    assert ep101.get("set_var") == ["SIPPROV_MUTE_MIC=yes", "SIPPROV_AUTOLOGIN=no"]
    assert auth101.items == [
        ("type", "=", "auth"), ("auth_type", "=", "digest"), ("username", "=", "101"),
        ("realm", "=", "sipprov"), ("password_digest", "=", f"MD5:{MD5}"),
        ("password_digest", "=", f"SHA-256:{SHA}"),
    ]
    assert aor101.items == [
        ("type", "=", "aor"), ("max_contacts", "=", "1"), ("remove_existing", "=", "yes"),
    ]
    ep102 = pj.sections[3]
    assert ep102.one("context") == "sipprov-outbound"
    assert ep102.get("set_var") == [
        "SIPPROV_MUTE_MIC=no", "SIPPROV_AUTOLOGIN=yes", "SIPPROV_OUTBOUND_NUMBER=+48221234567",
    ]
    ep103, auth103 = pj.sections[6], pj.sections[7]
    assert ep103.one("context") == "sipprov-outbound"
    assert len(ep103.get("set_var")) == 2  # no outbound number: the trunk's default
    # no SHA-256 digest stored: MD5 only; no stored realm: the configured one
    assert auth103.get("password_digest") == [f"MD5:{MD5}"]
    assert auth103.one("realm") == pure_cfg.asterisk.sip_realm


def test_support_path_behind_a_sip_front(pure_cfg: Config) -> None:
    pure_cfg.asterisk = dataclasses.replace(pure_cfg.asterisk, support_path=True)
    pj = parsed(render(sample(), pure_cfg))["pjsip.conf"]
    aors = [s for s in pj.sections if s.one("type") == "aor"]
    assert aors and all(a.one("support_path") == "yes" for a in aors)


def test_never_a_plaintext_password_line(pure_cfg: Config) -> None:
    pj = parsed(render(sample(), pure_cfg))["pjsip.conf"]
    for section in pj.sections:
        assert "password" not in section.keys()
        assert "md5_cred" not in section.keys()


def test_settings_come_from_config() -> None:
    c = Config()
    c.asterisk.backend = "files"
    c.asterisk.codecs = ["opus", "ulaw"]
    c.asterisk.direct_media = True
    c.asterisk.rtp_symmetric = False
    c.asterisk.force_rport = False
    c.asterisk.rewrite_contact = False
    c.asterisk.max_contacts = 3
    c.asterisk.remove_existing = False
    c.asterisk.transport = "transport-tls"
    c.asterisk.ring_timeout_s = 17
    c.asterisk.internal_context = "cc-in"
    c.asterisk.outbound_context = "cc-out"
    files = parsed(render(sample(), c))
    ep, _, aor = files["pjsip.conf"].sections[0:3]
    assert ep.one("allow") == "opus,ulaw"
    assert ep.one("transport") == "transport-tls"
    assert (ep.one("direct_media"), ep.one("rtp_symmetric"), ep.one("force_rport"),
            ep.one("rewrite_contact")) == ("yes", "no", "no", "no")
    assert (aor.one("max_contacts"), aor.one("remove_existing")) == ("3", "no")
    ext = files["extensions.conf"]
    assert ext.names() == ["cc-in", "cc-out"]
    assert ext.sections[0].get("exten")[0] == "101,1,Dial(PJSIP/101,17)"


def test_dialplan(pure_cfg: Config) -> None:
    ext = parsed(render(sample(), pure_cfg))["extensions.conf"]
    assert ext.names() == ["sipprov-internal", "sipprov-outbound", "sipprov-outbound-dial"]
    internal, outbound, dial = ext.sections
    assert internal.items == [
        ("exten", "=>", "101,1,Dial(PJSIP/101,30)"), ("same", "=>", "n,Hangup()"),
        ("exten", "=>", "102,1,Dial(PJSIP/102,30)"), ("same", "=>", "n,Hangup()"),
        ("exten", "=>", "103,1,Dial(PJSIP/103,30)"), ("same", "=>", "n,Hangup()"),
        # only queues with a number get one
        ("exten", "=>", "500,1,Queue(support)"), ("same", "=>", "n,Hangup()"),
    ]
    # internal first: an internal number never goes out the trunk
    assert outbound.items == [
        ("include", "=>", "sipprov-internal"), ("include", "=>", "sipprov-outbound-dial"),
    ]
    setcid = ('ExecIf($["${SIPPROV_OUTBOUND_NUMBER}" != ""]'
              "?Set(CALLERID(num)=${SIPPROV_OUTBOUND_NUMBER}))")
    assert dial.items == [
        ("exten", "=>", f"_X.,1,{setcid}"),
        ("same", "=>", "n,Dial(PJSIP/${EXTEN}@trunk,30)"),
        ("same", "=>", "n,Hangup()"),
        ("exten", "=>", f"_+X.,1,{setcid}"),
        ("same", "=>", "n,Dial(PJSIP/${EXTEN}@trunk,30)"),
        ("same", "=>", "n,Hangup()"),
    ]


def test_no_trunk_means_no_route_out(pure_cfg: Config) -> None:
    pure_cfg.asterisk.outbound_dial = ""
    ext = parsed(render(sample(), pure_cfg))["extensions.conf"]
    assert ext.names() == ["sipprov-internal", "sipprov-outbound"]
    assert ext.sections[1].items == [("include", "=>", "sipprov-internal")]


def test_queues(pure_cfg: Config) -> None:
    qs = parsed(render(sample(), pure_cfg))["queues.conf"]
    assert qs.names() == ["sales", "support"]  # sorted by name
    sales, support = qs.sections
    assert sales.items == [("strategy", "=", "rrmemory"), ("ringinuse", "=", "no")]
    assert support.items == [
        ("strategy", "=", "ringall"), ("ringinuse", "=", "no"),
        ("member", "=>", "PJSIP/101,2,j.kowalski"),  # sorted by extension
        ("member", "=>", "PJSIP/102,0,a.agent102"),
    ]


def test_empty_snapshot(pure_cfg: Config) -> None:
    files = parsed(render(Snapshot(0, [], []), pure_cfg))
    assert files["pjsip.conf"].sections == []
    assert files["queues.conf"].sections == []
    assert files["extensions.conf"].names() == [
        "sipprov-internal", "sipprov-outbound", "sipprov-outbound-dial",
    ]
    assert files["extensions.conf"].sections[0].items == []


def test_deterministic_whatever_the_input_order(pure_cfg: Config) -> None:
    snap = sample()
    first = render(snap, pure_cfg)
    rng = random.Random(4)
    for _ in range(5):
        agents = list(snap.agents)
        rng.shuffle(agents)
        queues = [dataclasses.replace(q, members=tuple(rng.sample(q.members, len(q.members))))
                  for q in snap.queues]
        rng.shuffle(queues)
        assert render(Snapshot(snap.version, agents, queues), pure_cfg) == first
    # the version is not part of the output (it would change the bytes every apply)
    assert render(dataclasses.replace(snap, version=99), pure_cfg) == first


def test_cache_gives_the_same_bytes_as_a_fresh_renderer(pure_cfg: Config) -> None:
    agents = [agent(100 + i, outbound_allowed=i % 3 == 0, outbound_number="+481234567")
              for i in range(200)]
    r = render_mod.renderer_for(pure_cfg)
    r.render(Snapshot(1, agents, []))
    agents[10] = dataclasses.replace(agents[10], ha1_md5="b" * 32)
    agents[20] = dataclasses.replace(agents[20], caller_id_name="changed")
    del agents[30]
    agents.append(agent(999))
    cached = r.render(Snapshot(2, agents, []))
    fresh = render_mod.Renderer(r.settings).render(Snapshot(2, agents, []))
    assert cached == fresh
    pj = parse_bytes(cached["pjsip.conf"])
    assert len(pj.sections) == 3 * 200
    assert pj.by_name("110")[1].get("password_digest")[0] == "MD5:" + "b" * 32


def test_ten_thousand_agents_render_completely(pure_cfg: Config) -> None:
    agents = [agent(10000 + i, ha1_md5=f"{i:032x}") for i in range(10000)]
    out = render(Snapshot(1, agents, []), pure_cfg)
    pj = parse_bytes(out["pjsip.conf"])
    assert len(pj.sections) == 30000
    assert pj.by_name("19999")[1].get("password_digest")[0] == f"MD5:{9999:032x}"


def test_unique_numbers_are_enforced(pure_cfg: Config) -> None:
    with pytest.raises(UnsafeValueError):
        render(Snapshot(1, [agent(101), agent(101)], []), pure_cfg)
    with pytest.raises(UnsafeValueError):
        render(Snapshot(1, [agent(101)], [QueueConf(1, "q", "ringall", 101)]), pure_cfg)
    with pytest.raises(UnsafeValueError):
        render(Snapshot(1, [], [QueueConf(1, "q", "ringall", None),
                                QueueConf(2, "Q", "ringall", None)]), pure_cfg)


# ----------------------------------------------------------------------------- hostile

HOSTILE = [
    "x\n[evil]\ntype=endpoint",
    "x\r\n#include /etc/passwd",
    "x\r[evil]",
    "[section]",
    "#include evil.conf",
    "#exec /bin/sh",
    "x;comment",
    "x;--block",
    'x"y',
    'x" <999>',
    "x\\",
    "${SHELL(id)}",
    "x\x00y",
    "x\x0by",
    "x\x1bz",
    "a\u2028b",
    "a\u0085b",
    "a\u202eb",
    "x>y",
]
# Not dangerous in a quoted caller id or a realm, refused where they would add fields.
FIELD_BREAKERS = ["x,y", "x)y", "x,y)\n[evil]"]


def _fields_of(obj) -> list[str]:
    return [f.name for f in dataclasses.fields(obj)]


def _expected_names(snap: Snapshot) -> dict[str, list[str]]:
    return {
        "pjsip.conf": [str(a.extension) for a in sorted(snap.agents, key=lambda a: a.extension)
                       for _ in range(3)],
        "queues.conf": sorted(q.name for q in snap.queues),
    }


def _render_or_refuse(snap: Snapshot, cfg: Config) -> None:
    """Either the renderer refuses, or the output is exactly the expected sections."""
    expected = _expected_names(sample())
    try:
        out = render(snap, cfg)
    except UnsafeValueError as exc:
        # the message names what was refused, never the value (it may be a digest)
        assert "evil" not in str(exc) and "SHELL" not in str(exc)
        return
    files = parsed(out)
    assert files["pjsip.conf"].names() == expected["pjsip.conf"]
    assert files["queues.conf"].names() == expected["queues.conf"]
    assert files["extensions.conf"].names() == [
        "sipprov-internal", "sipprov-outbound", "sipprov-outbound-dial",
    ]
    for conf in files.values():
        for section in conf.sections:
            for key, _, value in section.items:
                assert "evil" not in key and "evil" not in value


@pytest.mark.parametrize("payload", HOSTILE + FIELD_BREAKERS)
def test_hostile_value_in_every_agent_field(pure_cfg: Config, payload: str) -> None:
    base = sample()
    for name in _fields_of(base.agents[0]):
        for index in range(len(base.agents)):
            agents = list(base.agents)
            agents[index] = dataclasses.replace(agents[index], **{name: payload})
            _render_or_refuse(Snapshot(1, agents, base.queues), pure_cfg)
        # in the middle of a legitimate value too
        agents = list(base.agents)
        agents[1] = dataclasses.replace(agents[1], **{"outbound_allowed": True,
                                                      name: "ok" + payload + "ok"})
        _render_or_refuse(Snapshot(1, agents, base.queues), pure_cfg)


@pytest.mark.parametrize("payload", HOSTILE + FIELD_BREAKERS)
def test_hostile_value_in_every_queue_field(pure_cfg: Config, payload: str) -> None:
    base = sample()
    support = base.queues[0]
    for name in _fields_of(support):
        if name == "members":
            continue
        queues = [dataclasses.replace(support, **{name: payload}), base.queues[1]]
        _render_or_refuse(Snapshot(1, base.agents, queues), pure_cfg)
    for name in _fields_of(support.members[0]):
        members = (dataclasses.replace(support.members[0], **{name: payload}),
                   support.members[1])
        queues = [dataclasses.replace(support, members=members), base.queues[1]]
        _render_or_refuse(Snapshot(1, base.agents, queues), pure_cfg)


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_values_are_refused_not_rendered(pure_cfg: Config, payload: str) -> None:
    """Every line-breaking payload is refused outright in the free-text fields."""
    base = sample()
    for name in ("caller_id_name", "realm", "outbound_number", "ha1_md5", "ha1_sha256"):
        agents = [dataclasses.replace(base.agents[1], **{name: payload})]
        with pytest.raises(UnsafeValueError):
            render(Snapshot(1, agents, []), pure_cfg)
    for name in ("name", "strategy"):
        with pytest.raises(UnsafeValueError):
            render(Snapshot(1, [], [dataclasses.replace(base.queues[0], members=(),
                                                        **{name: payload})]), pure_cfg)


def test_wrong_types_are_refused(pure_cfg: Config) -> None:
    base = sample()
    for name, value in (("extension", "101"), ("extension", True), ("extension", -1),
                        ("mute_mic", "yes"), ("caller_id_name", None),
                        ("caller_id_name", 3.5), ("ha1_md5", None)):
        agents = [dataclasses.replace(base.agents[0], **{name: value})]
        with pytest.raises(UnsafeValueError):
            render(Snapshot(1, agents, []), pure_cfg)


@pytest.mark.parametrize("payload", FIELD_BREAKERS)
def test_field_breakers_are_refused_in_argument_lists(pure_cfg: Config, payload: str) -> None:
    base = sample()
    member = dataclasses.replace(base.queues[0].members[0], caller_id_name=payload)
    if "," in payload:  # member => PJSIP/101,2,<name>: the last field, so only "," matters
        with pytest.raises(UnsafeValueError):
            render(Snapshot(1, [], [dataclasses.replace(base.queues[0], members=(member,))]),
                   pure_cfg)
    with pytest.raises(UnsafeValueError):  # Queue(<name>)
        render(Snapshot(1, [], [dataclasses.replace(base.queues[0], name=payload,
                                                    members=())]), pure_cfg)
    for name in ("extension", "mute_mic"):
        with pytest.raises(UnsafeValueError):
            render(Snapshot(1, [dataclasses.replace(base.agents[0], **{name: payload})], []),
                   pure_cfg)


def test_reserved_queue_name_is_refused(pure_cfg: Config) -> None:
    for name in ("general", "General", " support", ""):
        with pytest.raises(UnsafeValueError):
            render(Snapshot(1, [], [QueueConf(1, name, "ringall", None)]), pure_cfg)


def test_legitimate_unusual_values_are_rendered_and_contained(pure_cfg: Config) -> None:
    base = sample()
    agents = [
        dataclasses.replace(base.agents[0], caller_id_name="J. Smith (sales) +1 @hq"),
        dataclasses.replace(base.agents[1], caller_id_name="Łukasz Żółć"),
        base.agents[2],
    ]
    queues = [dataclasses.replace(base.queues[0], members=(
        QueueMemberConf(101, 2, "J. Smith (sales) +1 @hq"),)), base.queues[1]]
    files = parsed(render(Snapshot(1, agents, queues), pure_cfg))
    assert files["pjsip.conf"].sections[0].one("callerid") == '"J. Smith (sales) +1 @hq" <101>'
    assert files["pjsip.conf"].sections[3].one("callerid") == '"Łukasz Żółć" <102>'
    assert files["queues.conf"].by_name("support")[0].get("member") == [
        "PJSIP/101,2,J. Smith (sales) +1 @hq"
    ]


@pytest.mark.parametrize(
    "key,value",
    [
        ("transport", "udp\n[evil]"),
        ("transport", "udp;x"),
        ("internal_context", "in[x]"),
        ("internal_context", "general"),
        ("outbound_context", "out\r\n#include x"),
        ("outbound_dial", "PJSIP/${EXTEN}@trunk\n[evil]"),
        ("outbound_dial", "PJSIP/x;y"),
        ("sip_realm", "realm\n[evil]"),
        ("sip_realm", 'a"b'),
        ("codecs", ["ulaw\n[evil]"]),
        ("codecs", []),
        ("ring_timeout_s", 0),
        ("max_contacts", True),
    ],
)
def test_hostile_configuration_is_refused(key: str, value: object) -> None:
    c = Config()
    setattr(c.asterisk, key, value)
    with pytest.raises(UnsafeValueError):
        render(sample(), c)


def test_finalize_refuses_unknown_types() -> None:
    for value in (None, 1.5, b"x", ["a"], object()):
        with pytest.raises(UnsafeValueError):
            render_mod.finalize(value)
    assert render_mod.finalize(True) == "yes"
    assert render_mod.finalize(0) == "0"
    assert render_mod.finalize(render_mod.Trusted("PJSIP/${EXTEN}@t")) == "PJSIP/${EXTEN}@t"
