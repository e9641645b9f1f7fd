"""The realtime backend's Asterisk configuration text (pure) and the
`sipprov asterisk realtime-config` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sipprov import config as config_mod
from sipprov.apply import realtimeconf
from sipprov.cli.main import main


def _conf(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "sipprov.toml"
    path.write_text('[database]\ndsn = "postgresql://sipprov:x@db.example.com:5433/prov"\n'
                    f'[asterisk]\nrealtime_db_password = "pw-Secret-42"\n{extra}')
    return path


def test_command_prints_what_asterisk_needs(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(_conf(tmp_path)), "asterisk", "realtime-config"]) == 0
    out = capsys.readouterr().out
    for line in ("ps_endpoints => pgsql,general", "queue_members => pgsql,general",
                 "dbhost = db.example.com", "dbport = 5433", "dbname = prov",
                 "dbuser = sipprov_asterisk",
                 # no all-agents query: start-up does not load 100,000 agents
                 "endpoint = realtime,ps_endpoints,allow_unqualified_fetch=no\n",
                 "auth = realtime,ps_auths,allow_unqualified_fetch=no\n",
                 "aor = realtime,ps_aors,allow_unqualified_fetch=no\n",
                 "load => res_config_pgsql.so", "load => res_sorcery_realtime.so",
                 "load => func_devstate.so", "; disable_multi_domain = yes"):
        assert line in out, line
    assert "pw-Secret-42" not in out and "dbpass = <password>" in out
    assert "config,pjsip.conf" not in out
    assert main(["-c", str(_conf(tmp_path)), "asterisk", "realtime-config",
                 "--show-password", "--files-too"]) == 0
    out = capsys.readouterr().out
    assert "dbpass = pw-Secret-42" in out
    assert "endpoint = config,pjsip.conf,criteria=type=endpoint" in out


def test_shared_contacts_and_path_lines(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config_mod.Config()
    assert "contact" not in realtimeconf.sorcery_conf(cfg)
    assert "ps_contacts => pgsql,general" in realtimeconf.extconfig_conf()
    extra = "shared_contacts = true\nsupport_path = true\n"
    assert main(["-c", str(_conf(tmp_path, extra)), "asterisk", "realtime-config"]) == 0
    out = capsys.readouterr().out
    # the registrations stay listable (PJSIPShowContacts: /status, the agent's phone)
    assert "contact = realtime,ps_contacts\n" in out
    assert "load => res_pjsip_path.so" in out


def test_cache_lines_and_socket_dsn() -> None:
    cfg = config_mod.Config()
    cfg.asterisk.realtime_cache = True
    cfg.asterisk.realtime_cache_lifetime_s = 30
    text = realtimeconf.sorcery_conf(cfg, with_files=False)
    assert ("auth/cache = memory_cache,object_lifetime_maximum=30,expire_on_reload=yes,"
            "name=sipprov_auth") in text
    # the cache line comes before the realtime line of the same type
    assert text.index("auth/cache") < text.index("auth = realtime")
    link = realtimeconf.db_link(cfg, "postgresql://postgres:@/sipprov?host=/tmp/pg", "pw")
    assert link.is_socket and "dbsock = /tmp/pg" in realtimeconf.res_pgsql_conf(link)


@pytest.mark.parametrize("value", ["pw\nload => evil.so", "pw;x", "pw x", "[general]"])
def test_hostile_connection_values_are_refused(tmp_path: Path, value: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sipprov.toml"
    path.write_text(f"[asterisk]\nrealtime_db_password = {json.dumps(value)}\n")
    assert main(["-c", str(path), "asterisk", "realtime-config"]) != 0
    assert "realtime_db_password" in capsys.readouterr().err
    with pytest.raises(realtimeconf.RealtimeConfigError):
        realtimeconf.db_link(config_mod.Config(), "postgresql://u@h/db", value)


def test_phone_device_state() -> None:
    from sipprov.apply.phones import device_state

    assert device_state(False, []) == "UNAVAILABLE"
    assert device_state(True, []) == "NOT_INUSE"
    assert device_state(True, ["Ringing"]) == "RINGING"
    assert device_state(True, ["Ringing", "Up"]) == "INUSE"
    assert device_state(False, ["Up"]) == "INUSE"  # a call outlives its registration


def test_which_agents_lose_their_registrations() -> None:
    from sipprov.apply.snapshot import AgentConf, diff_agents

    def agent(ext: int, md5: str, agent_id: int | None = None, name: str = "a.b") -> AgentConf:
        return AgentConf(agent_id or ext, ext, name, md5, None, None, False, None, False,
                         False, 1)

    before = {100: agent(100, "1" * 32), 101: agent(101, "2" * 32), 102: agent(102, "3" * 32)}
    now = {100: agent(100, "1" * 32, name="c.d"),   # renamed: changed, still registered
           101: agent(101, "9" * 32),                # rotated
           103: agent(103, "4" * 32)}                # new; 102 deleted
    changes = diff_agents(before, now)
    assert changes.credentials_gone == {101, 102}
    assert changes.changed == {100, 101, 102, 103}
    # the number went to another agent: the old phone must go too
    assert diff_agents({100: agent(100, "1" * 32, 5)}, {100: agent(100, "1" * 32, 6)}
                ).credentials_gone == {100}
    assert diff_agents(None, now).credentials_gone == frozenset()


async def test_asterisk_lookups_use_an_index(db_dsn: str) -> None:
    """Asterisk's lookup by id must not scan every row (O(N) per REGISTER), nor may the
    triggers' refresh of one agent scan every user (O(N) per change)."""
    import asyncpg

    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute("SET enable_seqscan = off")  # a tiny table would scan anyway
        for view in ("ps_endpoints", "ps_auths", "ps_aors"):
            plan = "\n".join(r[0] for r in await conn.fetch(
                f"EXPLAIN SELECT * FROM asterisk.{view} WHERE id = '101'"))
            assert f"{view}_pkey" in plan, plan
            plan = "\n".join(r[0] for r in await conn.fetch(
                f"EXPLAIN SELECT * FROM asterisk_src.{view} WHERE id = ANY(ARRAY['101'])"))
            assert "users_extension_text_idx" in plan, plan
    finally:
        await conn.close()
