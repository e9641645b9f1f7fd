"""Fixtures for the web console tests: a real headless Chromium (Debian's `chromium` +
`chromium-driver` through selenium, one per test session) and the real service
(`sipprov serve` as a subprocess on a free port) on its own database, writing into the
test PBX so phones can register with what the pages show."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from sipprov.agents import extensions
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate
from sipprov.apply.ami import AmiClient
from sipprov.config import Config
from sipprov.db import database
from sipprov.db.transaction import run
from sipprov.pbx.serveconf import serve_toml
from tests.conftest import IN_CI, cloned_database
from tests.test_mailer import Inbox

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[1]
ADMIN_PASSWORD = "Admin-Console-2026!"
AGENT_PASSWORD = "Agent-Console-2026!"
LOCKED_PASSWORD = "Locked-Console-2026!"
VI_PASSWORD = "Chau-Console-2026!"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(driver, condition, timeout: float = 20):
    """Until `condition`, asked again while the page is being replaced: an element found
    on the old page then goes stale, or Chromium answers "Node with given id does not
    belong to the document" (a WebDriverException); a condition never met still fails
    with a timeout."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,)).until(condition)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless Chromium for the whole session (fresh profile, no background
    networking: this closed network refuses Chromium's own connections)."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        _unavailable("chromium / chromium-driver are not installed")
    from selenium import webdriver

    profile = tempfile.mkdtemp(prefix="sipprov-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1000",
                "--lang=en-US"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Console:
    url: str
    dsn: str
    cfg: Config
    admin_id: int
    agent_id: int
    agent_extension: int
    # What the service e-mailed (a real SMTP server, aiosmtpd).
    inbox: Inbox

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


def _toml(cfg: Config, dsn: str, port: int, smtp_port: int) -> str:
    return serve_toml(cfg, dsn, port, extra=(
        "[security]\nlogin_free_attempts = 3\nlogin_lockout_attempts = 3\nlogin_lockout_s = 600\n"
        f"[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsender = \"pbx@example.com\"\ntimeout_s = 5.0\n"
    ))


async def _seed(cfg: Config, dsn: str) -> tuple[int, int, int]:
    pool = await database.create_pool(dsn, cfg.database)
    try:
        async with pool.acquire() as conn:
            await extensions.sync_pool(conn, cfg.extensions)
        admin = await run(pool, agents.create_agent, cfg, AgentCreate(
            first_name="Anna", last_name="Admin", email="anna.admin@example.com", role="admin",
            is_agent=False, password=ADMIN_PASSWORD), "test")
        agent = await run(pool, agents.create_agent, cfg, AgentCreate(
            first_name="Nguyễn Văn", last_name="An", email="an@example.com", role="agent",
            password=AGENT_PASSWORD, force_password_change=True), "test")
        await run(pool, agents.create_agent, cfg, AgentCreate(
            first_name="Lena", last_name="Locked", email="lena@example.com", role="end-user",
            is_agent=False, password=LOCKED_PASSWORD), "test")
        await run(pool, agents.create_agent, cfg, AgentCreate(
            first_name="Minh Châu", last_name="Phạm", email="chau@example.com", role="end-user",
            is_agent=False, password=VI_PASSWORD, language="vi"), "test")
        assert agent.agent.extension is not None
        return admin.agent.id, agent.agent.id, agent.agent.extension
    finally:
        await pool.close()


async def _forget_registrations(cfg: Config) -> None:
    """The PBX is shared by the whole test session: a phone an earlier test registered for
    the same extension number would show as this module's agent's phone."""
    client = AmiClient(cfg.asterisk)
    await client.connect()
    try:
        await client.send({"Action": "DBDelTree", "Family": "registrar"})
    finally:
        await client.close()


@pytest.fixture(scope="module")
async def console(pbx, pbx_config: Config, pg_base_dsn: str, pg_template: str) -> AsyncIterator[Console]:
    """`sipprov serve` on its own database and the test PBX, with three users."""
    await _forget_registrations(pbx_config)
    async with cloned_database(pg_base_dsn, pg_template) as dsn:
        admin_id, agent_id, extension = await _seed(pbx_config, dsn)
        port = free_port()
        inbox = Inbox()
        smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
        smtp.start()
        folder = Path(tempfile.mkdtemp(prefix="sipprov-web-test-"))
        conf = folder / "sipprov.toml"
        conf.write_text(_toml(pbx_config, dsn, port, smtp.port))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        log = (folder / "serve.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "sipprov.cli.main", "-c", str(conf), "serve"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(url + "/api/v1/health", timeout=2):
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("sipprov serve did not start:\n"
                                + (folder / "serve.log").read_text()[-3000:])
                await asyncio.sleep(0.1)
            yield Console(url, dsn, pbx_config, admin_id, agent_id, extension, inbox)
        finally:
            smtp.stop()
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            text = (folder / "serve.log").read_text(errors="replace")
            shutil.rmtree(folder, ignore_errors=True)
            for secret in (ADMIN_PASSWORD, AGENT_PASSWORD, LOCKED_PASSWORD, VI_PASSWORD):
                assert secret not in text, "a password reached the service log"
