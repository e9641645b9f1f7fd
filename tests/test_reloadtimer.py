"""The reload timeout follows the measured reload durations (pure logic)."""

from __future__ import annotations

from sipprov.apply.ami import ReloadFailed
from sipprov.apply.reloadtimer import FACTOR, MAX_S, ReloadTimer


def test_floor_until_reloads_are_measured() -> None:
    t = ReloadTimer(30.0)
    assert t.timeout("res_pjsip.so") == 30.0
    t.record("res_pjsip.so", 0.2)
    assert t.timeout("res_pjsip.so") == 30.0  # fast reloads never go below the floor


def test_slow_reloads_raise_the_timeout_per_module() -> None:
    t = ReloadTimer(5.0)
    for s in (1.0, 4.0, 2.5):
        t.record("res_pjsip.so", s)
    assert t.timeout("res_pjsip.so") == FACTOR * 4.0
    assert t.timeout("app_queue.so") == 5.0  # another module: its own measurements


def test_a_timed_out_reload_makes_the_next_wait_longer() -> None:
    t = ReloadTimer(5.0)
    t.timed_out("res_pjsip.so", 5.0)
    assert t.timeout("res_pjsip.so") == FACTOR * 5.0
    t.timed_out("res_pjsip.so", t.timeout("res_pjsip.so"))
    assert t.timeout("res_pjsip.so") == FACTOR * FACTOR * 5.0
    for _ in range(10):
        t.timed_out("res_pjsip.so", t.timeout("res_pjsip.so"))
    assert t.timeout("res_pjsip.so") == MAX_S


def test_only_recent_reloads_count() -> None:
    t = ReloadTimer(1.0)
    t.record("pbx_config.so", 10.0)
    for _ in range(20):
        t.record("pbx_config.so", 0.1)
    assert t.timeout("pbx_config.so") == 1.0


def test_reload_answers_are_classified_as_asterisk_words_them() -> None:
    # main/manager.c action_reload
    assert ReloadFailed("m", "A reload is in progress").kind == "busy"
    assert ReloadFailed("m", "Module not initialized").kind == "busy"
    assert ReloadFailed("m", "An unknown error occurred").kind == "refused"
    assert ReloadFailed("m", "No such module").kind == "unsupported"
    assert ReloadFailed("m", "Module does not support reload").kind == "unsupported"
