"""What the three generated Asterisk files must mean, written down independently of the
templates, and a checker that compares a render (read back with tests/asterisk_conf.py)
with it: exactly these sections, in this order, with exactly these keys and values.

The comparison is with what Asterisk itself reads, so it also checks two limits of
Asterisk's config parser (main/config.c) that tests/asterisk_conf.py does not model:
a line of 8,192 bytes or more is skipped with a warning (silently losing a key), and a
section name is kept in `char name[80]` (79 bytes: a longer one is cut, and two long
names could merge).
"""

from __future__ import annotations

from dataclasses import dataclass

from sipprov.apply import render as render_mod
from sipprov.apply.snapshot import AgentConf, QueueConf, Snapshot
from sipprov.config import Config
from tests.asterisk_conf import ConfFile, parse_bytes

# main/config.c: `char buf[8192]` per line (fgets), `char name[80]` per category.
ASTERISK_LINE_MAX_BYTES = 8190  # + "\n" + NUL
ASTERISK_SECTION_MAX_BYTES = 79

# Item = (key, "=" or "=>", value); Section = (name, [items]).
Item = tuple[str, str, str]


@dataclass
class ExpectedSection:
    name: str
    items: list[Item]


def _text(value: object) -> str:
    """A scalar as the renderer writes it (render.finalize): booleans as yes/no,
    integers in decimal, text as it is."""
    if type(value) is bool:
        return "yes" if value else "no"
    return str(value)


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


_AST_BLANKS = "".join(chr(c) for c in range(33))


def _strip(value: str) -> str:
    # Asterisk strips a value with ast_strip(): every byte below 33.
    return value.strip(_AST_BLANKS)


def expected_pjsip(agents: list[AgentConf], s: render_mod.Settings) -> list[ExpectedSection]:
    out = []
    for a in sorted(agents, key=lambda a: a.extension):
        ext = str(a.extension)
        outbound = a.outbound_allowed is True
        endpoint: list[Item] = [
            ("type", "=", "endpoint"),
            ("transport", "=", s.transport),
            ("context", "=", s.outbound_context if outbound else s.internal_context),
            ("disallow", "=", "all"),
            ("allow", "=", s.codecs),
            ("direct_media", "=", _yn(s.direct_media)),
            ("rtp_symmetric", "=", _yn(s.rtp_symmetric)),
            ("force_rport", "=", _yn(s.force_rport)),
            ("rewrite_contact", "=", _yn(s.rewrite_contact)),
            ("auth", "=", ext),
            ("aors", "=", ext),
            ("callerid", "=", f'"{_text(a.caller_id_name)}" <{ext}>'),
            ("set_var", "=", f"SIPPROV_MUTE_MIC={_yn(a.mute_mic)}"),
            ("set_var", "=", f"SIPPROV_AUTOLOGIN={_yn(a.autologin_phone)}"),
        ]
        if outbound and a.outbound_number is not None:
            endpoint.append(("set_var", "=", f"SIPPROV_OUTBOUND_NUMBER={a.outbound_number}"))
        auth: list[Item] = [
            ("type", "=", "auth"),
            ("auth_type", "=", "digest"),
            ("username", "=", ext),
            ("realm", "=", _strip(_text(a.realm or s.realm))),
            ("password_digest", "=", f"MD5:{a.ha1_md5}"),
        ]
        if s.sha256 and a.ha1_sha256:
            auth.append(("password_digest", "=", f"SHA-256:{a.ha1_sha256}"))
        aor: list[Item] = [
            ("type", "=", "aor"),
            ("max_contacts", "=", str(s.max_contacts)),
            ("remove_existing", "=", _yn(s.remove_existing)),
        ]
        out += [ExpectedSection(ext, endpoint), ExpectedSection(ext, auth),
                ExpectedSection(ext, aor)]
    return out


def _sorted_queues(queues: list[QueueConf]) -> list[QueueConf]:
    return sorted(queues, key=lambda q: (q.name, q.id))


def expected_queues(queues: list[QueueConf]) -> list[ExpectedSection]:
    out = []
    for q in _sorted_queues(queues):
        items: list[Item] = [("strategy", "=", q.strategy), ("ringinuse", "=", "no")]
        for m in sorted(q.members, key=lambda m: (m.extension, m.penalty)):
            items.append(("member", "=>",
                          _strip(f"PJSIP/{m.extension},{m.penalty},{_text(m.caller_id_name)}")))
        out.append(ExpectedSection(q.name, items))
    return out


def expected_extensions(agents: list[AgentConf], queues: list[QueueConf],
                        s: render_mod.Settings) -> list[ExpectedSection]:
    internal: list[Item] = []
    for a in sorted(agents, key=lambda a: a.extension):
        internal += [("exten", "=>", f"{a.extension},1,Dial(PJSIP/{a.extension},{s.ring_timeout_s})"),
                     ("same", "=>", "n,Hangup()")]
    for q in _sorted_queues(queues):
        if q.number is not None:
            internal += [("exten", "=>", f"{q.number},1,Queue({q.name})"),
                         ("same", "=>", "n,Hangup()")]
    outbound: list[Item] = [("include", "=>", s.internal_context)]
    out = [ExpectedSection(s.internal_context, internal)]
    if s.outbound_dial:
        outbound.append(("include", "=>", f"{s.outbound_context}-dial"))
        out.append(ExpectedSection(s.outbound_context, outbound))
        dial: list[Item] = []
        for pattern in ("_X.", "_+X."):
            dial += [
                ("exten", "=>", f'{pattern},1,ExecIf($["${{SIPPROV_OUTBOUND_NUMBER}}" != ""]'
                                "?Set(CALLERID(num)=${SIPPROV_OUTBOUND_NUMBER}))"),
                ("same", "=>", f"n,Dial({s.outbound_dial},{s.ring_timeout_s})"),
                ("same", "=>", "n,Hangup()"),
            ]
        out.append(ExpectedSection(f"{s.outbound_context}-dial", dial))
    else:
        out.append(ExpectedSection(s.outbound_context, outbound))
    return out


def expected_files(snap: Snapshot, cfg: Config) -> dict[str, list[ExpectedSection]]:
    s = render_mod.Settings.from_config(cfg.asterisk)
    return {
        "pjsip.conf": expected_pjsip(snap.agents, s),
        "extensions.conf": expected_extensions(snap.agents, snap.queues, s),
        "queues.conf": expected_queues(snap.queues),
    }


def read_back(name: str, data: bytes) -> ConfFile:
    """Parse one generated file the way Asterisk reads it; fail on what Asterisk would
    skip or cut (over-long lines, over-long section names) and on anything that is not a
    plain section: a directive, an item before the first section, a template."""
    for lineno, line in enumerate(data.split(b"\n"), 1):
        assert len(line) <= ASTERISK_LINE_MAX_BYTES, (
            f"{name} line {lineno}: {len(line)} bytes; Asterisk skips lines this long")
    conf = parse_bytes(data)
    assert conf.directives == [], f"{name}: directives {conf.directives}"
    assert conf.preamble == [], f"{name}: items before the first section {conf.preamble}"
    for section in conf.sections:
        assert section.options == "", f"{name}: [{section.name}]({section.options})"
        assert len(section.name.encode("utf-8")) <= ASTERISK_SECTION_MAX_BYTES, (
            f"{name}: section name of {len(section.name.encode())} bytes; Asterisk keeps 79")
    return conf


def assert_files_mean(files: dict[str, bytes], snap: Snapshot, cfg: Config) -> None:
    """The rendered bytes mean exactly the snapshot: same sections, keys and values."""
    assert set(files) == set(render_mod.FILES), sorted(files)
    expected = expected_files(snap, cfg)
    for name in render_mod.FILES:
        conf = read_back(name, files[name])
        got = [(s.name, s.items) for s in conf.sections]
        want = [(e.name, e.items) for e in expected[name]]
        if got != want:
            # name the first difference, not a wall of text
            for index, (g, w) in enumerate(zip(got, want, strict=False)):
                assert g == w, f"{name} section #{index}: got {g!r}, expected {w!r}"
            assert len(got) == len(want), (
                f"{name}: {len(got)} sections, expected {len(want)}: "
                f"{[g[0] for g in got]!r} vs {[w[0] for w in want]!r}")
