"""Property-based tests of the renderer alone - the second wall behind the validators.

Any string (or wrong type) in any field of the snapshot or in the operator's settings
is fed straight to render(), bypassing the service's validation: it must either refuse
with UnsafeValueError (whose message never quotes the value: it may be a digest), or
produce files that read back - as Asterisk reads them, see tests/faults/expect.py - as
exactly the intended sections, keys and values. 1,000 cases per field.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipprov.apply import render
from sipprov.apply.render import UnsafeValueError
from sipprov.apply.snapshot import AgentConf, QueueConf, QueueMemberConf, Snapshot
from sipprov.config import Config
from tests.faults.expect import (
    ASTERISK_LINE_MAX_BYTES,
    ASTERISK_SECTION_MAX_BYTES,
    assert_files_mean,
)
from tests.faults.strategies import ANY_CHAR, each_field, hostile_text

PROPERTY = settings(max_examples=1000, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

MD5 = "5f4dcc3b5aa765d61d8327deb882cf99"
SHA = "0123456789abcdef" * 4


def _cfg() -> Config:
    c = Config()
    c.asterisk.backend = "files"
    c.asterisk.outbound_dial = "PJSIP/${EXTEN}@trunk"
    return c


CFG = _cfg()


def _agent(ext: int, **kw: Any) -> AgentConf:
    base: dict[str, Any] = dict(
        id=ext, extension=ext, caller_id_name=f"a.agent{ext}", ha1_md5=MD5, ha1_sha256=SHA,
        realm="sipprov", outbound_allowed=True, outbound_number="+48221234567",
        mute_mic=False, autologin_phone=True, priority=1)
    base.update(kw)
    return AgentConf(**base)


def _snapshot(agent_kw: dict[str, Any] | None = None, queue_kw: dict[str, Any] | None = None,
              member_kw: dict[str, Any] | None = None) -> Snapshot:
    """Two agents and two queues; the hostile value goes into the first of each."""
    member = dataclasses.replace(QueueMemberConf(101, 0, "a.agent101"), **(member_kw or {}))
    queues = [
        dataclasses.replace(QueueConf(1, "support", "ringall", 500,
                                      (member, QueueMemberConf(102, 3, "a.agent102"))),
                            **(queue_kw or {})),
        QueueConf(2, "sales", "rrmemory", None, ()),
    ]
    return Snapshot(3, [_agent(101, **(agent_kw or {})), _agent(102)], queues)


_RENDERER_TEXT = Path(render.__file__).read_text()


def _must_not_echo(exc: UnsafeValueError, value: Any) -> None:
    # (the reserved section names "general"/"globals" may be named: they are no secret;
    # nor is a value that is part of the renderer's own wording, such as "penalt")
    if isinstance(value, str) and len(value) >= 6 and value.strip() \
            and value.lower() not in ("general", "globals") and value not in _RENDERER_TEXT:
        assert value not in str(exc), f"the refusal quotes the value: {exc}"


# Compiling the templates costs ~20 ms and render() keeps a few compiled Renderers by
# Settings: for new settings on every example, reuse one compilation (the templates do
# not depend on the settings, which are passed at render time).
_COMPILED = render.Renderer(render.Settings.from_config(CFG.asterisk))


def _render(snap: Snapshot, cfg: Config) -> dict[str, bytes]:
    # A fresh per-agent cache each time: the cache is keyed on equality, and 1.0 == True,
    # so a block rendered for an earlier example would stand in for this one's odd type.
    renderer = copy.copy(_COMPILED)
    renderer.settings = render.Settings.from_config(cfg.asterisk)
    renderer._cache = {}
    return renderer.render(snap)


def render_or_refuse(snap: Snapshot, cfg: Config, value: Any) -> bool:
    """True when rendered (and then exactly right), False when refused."""
    try:
        files = _render(snap, cfg)
    except UnsafeValueError as exc:
        _must_not_echo(exc, value)
        return False
    assert_files_mean(files, snap, cfg)
    return True


AGENT_TEXT = ("caller_id_name", "ha1_md5", "ha1_sha256", "realm", "outbound_number")
AGENT_TYPED = ("extension", "priority", "outbound_allowed", "mute_mic", "autologin_phone")
QUEUE_TEXT = ("name", "strategy")
QUEUE_TYPED = ("number", "id")
MEMBER_TEXT = ("caller_id_name",)
MEMBER_TYPED = ("extension", "penalty")
SETTINGS_TEXT = ("transport", "internal_context", "outbound_context", "outbound_dial",
                 "sip_realm")

FIELDS = ([f"agent.{n}" for n in AGENT_TEXT + AGENT_TYPED]
          + [f"queue.{n}" for n in QUEUE_TEXT + QUEUE_TYPED]
          + [f"member.{n}" for n in MEMBER_TEXT + MEMBER_TYPED]
          + [f"settings.{n}" for n in SETTINGS_TEXT] + ["settings.codecs"])


def check_field(field: str, value: Any) -> bool:
    where, name = field.split(".", 1)
    cfg = CFG
    snap = _snapshot()
    if where == "agent":
        snap = _snapshot(agent_kw={name: value})
    elif where == "queue":
        snap = _snapshot(queue_kw={name: value})
    elif where == "member":
        snap = _snapshot(member_kw={name: value})
    else:
        cfg = copy.deepcopy(CFG)
        setattr(cfg.asterisk, name, [value] if name == "codecs" else value)
    return render_or_refuse(snap, cfg, value)


LEGIT = ("j.kowalski", "J. Smith (sales) +1 @hq", "Łukasz Żółć", "support", "sipprov",
         MD5, SHA, "+48123456", "ringall", "transport-udp", "PJSIP/${EXTEN}@trunk")


@PROPERTY
@given(values=st.fixed_dictionaries({f: hostile_text(legit=LEGIT) for f in FIELDS}))
def test_any_string_in_any_field_is_refused_or_rendered_exactly(values: dict[str, str]) -> None:
    each_field(check_field, values)


# (Hashable values only: the snapshot's rows are hashable by contract - the renderer's
# per-agent cache is keyed by them - and the database only gives scalars.)
ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                      st.binary(max_size=4), st.tuples(st.integers()),
                      st.text(alphabet=ANY_CHAR, max_size=4))


@settings(max_examples=300, deadline=None, database=None)
@given(values=st.fixed_dictionaries({f: ANY_VALUE for f in FIELDS
                                     if not f.startswith("settings.")}))
def test_any_type_in_any_field_is_refused_or_rendered_exactly(values: dict[str, Any]) -> None:
    """A number where text belongs, a string where a number belongs, None, bytes...
    (The settings' types are enforced when the configuration is loaded: config.py.)"""
    each_field(check_field, values)


# --- the limits of Asterisk's parser, at their edges ---------------------------------


@pytest.mark.parametrize("char", ["a", "ł", "中", "\U0001f600"])
@pytest.mark.parametrize("field", ["agent.caller_id_name", "member.caller_id_name",
                                   "agent.realm", "settings.sip_realm"])
def test_values_too_long_for_an_asterisk_line_are_refused(field: str, char: str) -> None:
    """Asterisk skips a config line of 8,192 bytes or more (main/config.c): a value that
    long must be refused, never silently dropped by Asterisk."""
    value = char * (ASTERISK_LINE_MAX_BYTES // len(char.encode()) + 1)
    assert check_field(field, value) is False


def test_the_shortcut_renders_like_render() -> None:
    cfg = copy.deepcopy(CFG)
    cfg.asterisk.sip_realm = "other-realm"
    assert _render(_snapshot(), cfg) == render.render(_snapshot(), cfg)


@pytest.mark.parametrize("char", ["a", "ł", "中"])
@pytest.mark.parametrize("field", ["queue.name", "settings.internal_context",
                                   "settings.outbound_context"])
def test_section_names_longer_than_asterisk_keeps_are_refused(field: str, char: str) -> None:
    """Asterisk keeps a section name in `char name[80]` and a context in
    AST_MAX_CONTEXT (80): longer names are cut, so two queues could merge. Every
    section name must fit in 79 bytes - `<outbound_context>-dial` included."""
    for length in range(60, 90):
        value = char * length
        if check_field(field, value):
            longest = len(value.encode()) + (len("-dial") if field.endswith("outbound_context") else 0)
            assert longest <= ASTERISK_SECTION_MAX_BYTES, (field, length)
