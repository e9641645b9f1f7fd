"""Screenshots of the web console's main pages in every language, for the README:

    python -m bench.screenshots [--out docs/screenshots]

Builds its own world (bench.env: an embedded PostgreSQL, a PBX instance on free ports),
seeds a small contact centre with Polish and Vietnamese names, registers two phones
with SIPp, runs `sipprov serve` and drives a headless Chromium through the pages, in
English, Polish and Vietnamese. Everything it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import env
from sipprov.agents import extensions
from sipprov.agents import service as agents
from sipprov.agents.models import AccountTypeCreate, AgentCreate, DepartmentCreate, QueueCreate
from sipprov.config import Config
from sipprov.db import database
from sipprov.db.transaction import run
from sipprov.directory import lookups
from sipprov.directory import queues as queue_service
from sipprov.i18n import LANGUAGES
from sipprov.pbx import sipp
from sipprov.pbx.serveconf import serve_toml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ADMIN = ("ewa.nowak", "Screens-Admin-2026!")
AGENT = ("nguyen-van.an", "Screens-Agent-2026!")
WIDTH = 1280
# A new agent per language, typed into the add form.
NEW_AGENT = {"en": ("Jan", "Kowalski"), "pl": ("Łukasz", "Żółć"), "vi": ("Trần Thị Bích", "Ngọc")}
CSV = (
    "first_name,last_name,email,phone,department,queues\n"
    "Zofia,Wójcik,zofia.wojcik@example.com,,Warszawa,support\n"
    "Bad,Row,not-an-e-mail,,,\n"
    "Phạm,Minh Châu,minh.chau@example.com,+84912345678,Hà Nội,support\n"
)


@contextlib.contextmanager
def serve(conf: Path, url: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`sipprov serve -c conf` until the block ends; waits for /api/v1/health first."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sipprov.cli.main", "-c", str(conf), "serve"],
                                cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(url + "/api/v1/health", timeout=2):
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("sipprov serve did not start:\n" + log_path.read_text()[-2000:])
                time.sleep(0.1)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def seed(cfg: Config, dsn: str) -> list[tuple[str, str]]:
    """A small contact centre; returns (SIP username, password) of two phones."""
    pool = await database.create_pool(dsn, cfg.database)
    try:
        async with pool.acquire() as conn:
            await database.upgrade(conn)
            await extensions.sync_pool(conn, cfg.extensions)
        for name in ("Warszawa", "Hà Nội"):
            await run(pool, lookups.create_department, cfg, DepartmentCreate(name=name), "screens")
        await run(pool, lookups.create_account_type, cfg, AccountTypeCreate(name="premium", max_users=25),
                                          "screens")
        queues = (("support", "voice"), ("sales", "voice"), ("czat-pl", "chat"), ("phieu-vn", "ticket"))
        for name, kind in queues:
            await run(pool, queue_service.create_queue, cfg, QueueCreate(name=name, kind=kind), "screens")
        await run(pool, agents.create_agent, cfg, AgentCreate(
            first_name="Ewa", last_name="Nowak", email="ewa.nowak@example.com", role="admin",
            is_agent=False, password=ADMIN[1], department="Warszawa"), "screens")
        phones = []
        people: list[dict[str, Any]] = [
            {"first_name": "Nguyễn Văn", "last_name": "An", "email": "an@example.com",
             "password": AGENT[1], "department": "Hà Nội", "queues": [{"name": "support"}]},
            {"first_name": "Małgorzata", "last_name": "Wiśniewska", "email": "m.wisniewska@example.com",
             "department": "Warszawa", "priority": 2, "account_type": "premium",
             "queues": [{"name": "support"}, {"name": "sales", "penalty": 5}, {"name": "czat-pl"}]},
            {"first_name": "Lê Thị", "last_name": "Hồng", "email": "hong@example.com", "department": "Hà Nội",
             "queues": [{"name": "sales"}, {"name": "phieu-vn"}], "outbound_allowed": True},
            {"first_name": "Piotr", "last_name": "Zieliński", "email": "piotr@example.com",
             "role": "supervisor", "department": "Warszawa", "queues": [{"name": "support"}]},
            {"first_name": "Đặng", "last_name": "Quốc Bảo", "email": "bao@example.com", "role": "end-user",
             "is_agent": False, "department": "Hà Nội"},
        ]
        for person in people:
            created = await run(pool, agents.create_agent, cfg, AgentCreate(**person), "screens")
            if created.sip is not None and len(phones) < 2:
                phones.append((created.sip.username, created.sip.password))
        return phones
    finally:
        await pool.close()


class Browser:
    """A headless Chromium (fresh profile, no background networking)."""

    def __init__(self, url: str, out: Path) -> None:
        from selenium import webdriver

        self.url, self.out = url, out
        self.profile = tempfile.mkdtemp(prefix="sipprov-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={self.profile}",
                    f"--window-size={WIDTH},900"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(options=options,
                                       service=webdriver.ChromeService(executable_path=CHROMEDRIVER))

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    def by_id(self, element_id: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, element_id)

    def wait_for(self, element_id: str) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, 30).until(EC.presence_of_element_located((By.ID, element_id)))

    def go(self, path: str) -> None:
        self.driver.get(self.url + path)

    def log_in(self, login: str, password: str) -> None:
        self.driver.delete_all_cookies()
        self.go("/login")
        self.by_id("login").send_keys(login)
        self.by_id("password").send_keys(password)
        self.by_id("password").submit()
        self.wait_for("logout")

    def language(self, lang: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select, WebDriverWait

        Select(self.by_id("lang-switch")).select_by_value(lang)
        WebDriverWait(self.driver, 30).until(
            lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang)

    def shot(self, name: str) -> Path:
        """The whole page (the window grows to the page's height) as OUT/name.png."""
        height = self.driver.execute_script(
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
        # The viewport itself (a window size includes the browser's frame).
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": WIDTH, "height": min(max(int(height), 640), 4000), "deviceScaleFactor": 1,
            "mobile": False})
        path = self.out / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return path


def take(browser: Browser, tmp: Path) -> list[Path]:
    csv = tmp / "agents.csv"
    csv.write_text(CSV, encoding="utf-8")
    saved = []
    for lang in LANGUAGES:
        browser.driver.delete_all_cookies()
        browser.go("/login")
        browser.language(lang)
        saved.append(browser.shot(f"{lang}-login"))
        browser.log_in(*ADMIN)
        browser.language(lang)
        browser.go("/agents")
        saved.append(browser.shot(f"{lang}-agents"))
        first, last = NEW_AGENT[lang]
        browser.go("/agents/new")
        browser.by_id("first_name").send_keys(first)
        browser.by_id("last_name").send_keys(last)
        time.sleep(0.8)  # the live preview's debounce and fetch (a screenshot, not a test)
        saved.append(browser.shot(f"{lang}-add-agent"))
        browser.by_id("email").send_keys(f"{first.split()[0].lower()}.{lang}@example.com")
        browser.by_id("save").click()
        browser.wait_for("created-login")
        saved.append(browser.shot(f"{lang}-agent-created"))
        browser.go("/queues/support")
        saved.append(browser.shot(f"{lang}-queue"))
        browser.go("/directory")
        saved.append(browser.shot(f"{lang}-directory"))
        browser.go("/directory/roles")
        saved.append(browser.shot(f"{lang}-roles"))
        browser.go("/import")
        browser.by_id("file").send_keys(str(csv))
        browser.by_id("preview-import").click()
        browser.wait_for("import-counts")
        saved.append(browser.shot(f"{lang}-import-preview"))
        browser.go("/asterisk")
        saved.append(browser.shot(f"{lang}-asterisk"))
        browser.log_in(*AGENT)
        browser.language(lang)
        browser.go("/me")
        saved.append(browser.shot(f"{lang}-self-service"))
        browser.by_id("rotate-own-sip").click()
        browser.wait_for("qr")
        saved.append(browser.shot(f"{lang}-self-service-sip"))
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.screenshots", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="sipprov-screens-"))
    cfg = env.make_config()
    cfg.extensions = dataclasses.replace(cfg.extensions, first=100, last=999)
    postgres = env.Postgres(tmp)
    browser: Browser | None = None
    try:
        env.reap_stale_instances(cfg)
        env.stage("PostgreSQL and the PBX")
        base = postgres.start()
        dsn = asyncio.run(postgres.create_database("screens"))
        env.start_pbx(cfg)
        phones = asyncio.run(seed(cfg, dsn))
        conf = tmp / "sipprov.toml"
        conf.write_text(serve_toml(cfg, dsn, cfg.http.port))
        url = f"http://127.0.0.1:{cfg.http.port}"
        with serve(conf, url, tmp / "serve.log"):
            env.stage("registering two phones")
            for username, password in phones:
                for _ in range(50):  # until the applier has the seeded agents
                    reg = asyncio.run(sipp.register("127.0.0.1", cfg.pbx.sip_port, username, password))
                    if reg.ok:
                        break
                    time.sleep(0.2)
            env.stage("browsing")
            browser = Browser(url, args.out)
            saved = take(browser, tmp)
        del base
        for path in saved:
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        return 0
    finally:
        if browser is not None:
            browser.close()
        with contextlib.suppress(Exception):
            env.stop_pbx(cfg)
        postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
