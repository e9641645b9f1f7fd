"""The console's CSV import behind several `sipprov serve` instances (docs/scale-out.md,
"The console's CSV import"): two real serve processes on one PostgreSQL and the test
PBX, one real headless Chromium going from one instance to the other, as a round-robin
load balancer would send it.

- Upload on A, preview and confirm on B, progress and the one-time download on A.
- The job's row holds no plaintext: neither a generated password nor an e-mail of the
  file; a browser without the job's key (cookie) gets nothing.
- The preview in Polish names the field and gives sipprov's reason in Polish.
- B SIGKILLed, or stopped with SIGTERM, while it applies a job (held inside the
  import's transaction by a lock the test holds): A reports the job interrupted, and
  nothing was imported.
- An expired job is gone for its browser, and deleted by the next upload on B.

The tests of this module run in order on the same two instances and browser."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

from sipprov.agents.validation import Refused
from sipprov.bulk.state import RowResult
from sipprov.i18n import translations
from sipprov.web import imports
from tests import web_fixtures
from tests.conftest import cloned_database
from tests.web_fixtures import ADMIN_PASSWORD, ROOT, _seed, _toml, free_port

pytest_plugins = ["tests.web_fixtures"]
pytestmark = pytest.mark.pbx

WAIT_S = 30


@dataclass
class Instance:
    """One `sipprov serve` process (its config and log in `folder`)."""

    name: str
    conf: Path
    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.folder / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sipprov.cli.main", "-c", str(self.conf), "serve"],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url + "/api/v1/health", timeout=2):
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sipprov serve {self.name} did not start:\n{self.log()[-3000:]}")
            time.sleep(0.1)  # polling for the port to answer

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return (self.folder / f"{self.name}.log").read_text(errors="replace")


@dataclass
class Pair:
    a: Instance
    b: Instance
    dsn: str


@pytest.fixture(scope="module")
async def pair(pbx, pbx_config, pg_base_dsn: str, pg_template: str) -> AsyncIterator[Pair]:
    """Two instances of `sipprov serve` on one database (with the web fixtures' users)."""
    async with cloned_database(pg_base_dsn, pg_template) as dsn:
        await _seed(pbx_config, dsn)
        folder = Path(tempfile.mkdtemp(prefix="sipprov-imports-test-"))
        made = []
        for name in ("a", "b"):
            port = free_port()
            conf = folder / f"{name}.toml"
            conf.write_text(_toml(pbx_config, dsn, port, free_port()))
            made.append(Instance(name, conf, port, folder))
        try:
            for inst in made:
                inst.start()
            yield Pair(made[0], made[1], dsn)
        finally:
            for inst in made:
                inst.stop()
            shutil.rmtree(folder, ignore_errors=True)


def wait(driver, condition):
    return web_fixtures.wait(driver, condition, WAIT_S)


def log_in(browser, url: str) -> None:
    browser.delete_all_cookies()
    browser.get(url + "/login")
    browser.find_element(By.ID, "login").send_keys("anna.admin")
    browser.find_element(By.ID, "password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    wait(browser, EC.url_to_be(url + "/agents"))


def upload(browser, url: str, path: Path, continue_on_error: bool = True) -> str:
    """Upload through `url`'s form; the job's id (the preview page it lands on)."""
    browser.get(url + "/import")
    browser.find_element(By.ID, "file").send_keys(str(path))
    if continue_on_error:
        browser.find_element(By.ID, "continue_on_error").click()
    browser.find_element(By.ID, "preview-import").click()
    wait(browser, EC.presence_of_element_located((By.ID, "import-counts")))
    return browser.current_url.rsplit("/", 1)[1]


def fetch(url: str, cookies: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={
        "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def row_bytes(dsn: str, job_id: str) -> bytes:
    """Every column of the job's row, as PostgreSQL would write them out."""
    conn = await asyncpg.connect(dsn)
    try:
        text = await conn.fetchval("SELECT t::text FROM import_jobs t WHERE id = $1", job_id)
        raw = await conn.fetchval(
            "SELECT coalesce(upload_enc, '') || coalesce(preview_enc, '') || coalesce(result_enc, '')"
            " || coalesce(credentials_enc, '') FROM import_jobs WHERE id = $1", job_id)
    finally:
        await conn.close()
    assert text is not None
    return text.encode() + raw


def write_csv(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_upload_on_a_confirm_on_b_progress_and_download_on_a(browser, pair: Pair, tmp_path) -> None:
    a, b = pair.a.url, pair.b.url
    log_in(browser, a)
    path = write_csv(tmp_path, "team.csv",
                     "first_name,last_name,email\n"
                     "Zofia,Wójcik,zofia.wojcik@example.com\n"
                     "Bad,Row,not-an-e-mail\n"
                     "Łukasz,Żółć,lukasz.zolc@example.com\n")
    job = upload(browser, a, path)
    key_cookie = browser.get_cookie(imports.KEY_COOKIE)
    assert key_cookie["httpOnly"] is True and key_cookie["sameSite"] == "Strict"
    assert key_cookie["path"] == f"/import/{job}"

    # the preview, on B
    browser.get(f"{b}/import/{job}")
    wait(browser, EC.presence_of_element_located((By.ID, "apply-import")))
    assert browser.find_element(By.ID, "count-create").text == "2"
    assert browser.find_element(By.ID, "count-error").text == "1"
    bad = browser.find_element(By.CSS_SELECTOR, "tr.row-error")
    assert "email: must be a valid e-mail address" in bad.text
    before = asyncio.run(row_bytes(pair.dsn, job))
    for secret in (b"zofia.wojcik@example.com", "Wójcik".encode(), b"not-an-e-mail"):
        assert secret not in before

    # confirmed on B, which applies it
    browser.find_element(By.ID, "apply-import").click()
    wait(browser, EC.url_to_be(f"{b}/import/{job}"))
    # progress and result, on A (its page polls A until the job is done)
    browser.get(f"{a}/import/{job}")
    wait(browser, EC.presence_of_element_located((By.ID, "import-done")))
    assert browser.find_element(By.ID, "count-create").text == "2"
    assert browser.find_element(By.ID, "credentials").is_displayed()
    assert pair.b.proc is not None
    assert asyncio.run(_runner(pair.dsn, job)) == f"{socket.gethostname()}:{pair.b.proc.pid}"
    sealed = asyncio.run(row_bytes(pair.dsn, job))

    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    assert imports.KEY_COOKIE in cookies
    # without the job's key (another browser of the same admin): nothing
    no_key = {k: v for k, v in cookies.items() if k != imports.KEY_COOKIE}
    assert fetch(f"{a}/import/{job}", no_key)[0] == 404
    assert fetch(f"{a}/import/{job}/credentials.csv", no_key)[0] == 404
    status, body = fetch(f"{a}/import/{job}/credentials.csv", cookies)
    assert status == 200, body
    creds = list(csv.DictReader(io.StringIO(body.decode())))
    assert sorted(c["email"] for c in creds) == ["lukasz.zolc@example.com", "zofia.wojcik@example.com"]
    passwords = [c[k] for c in creds for k in ("web_password", "sip_password") if c[k]]
    assert len(passwords) == 4
    for secret in passwords + ["zofia.wojcik@example.com", "lukasz.zolc@example.com"]:
        assert secret.encode() not in sealed, "plaintext in the job's row"
    for inst in (pair.a, pair.b):
        assert not any(p in inst.log() for p in passwords), "a password reached a log"
    # once: gone from the row, on every instance
    assert fetch(f"{b}/import/{job}/credentials.csv", cookies)[0] == 404
    assert fetch(f"{a}/import/{job}/credentials.csv", cookies)[0] == 404
    assert asyncio.run(_has_credentials(pair.dsn, job)) is False


async def _runner(dsn: str, job: str) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT runner FROM import_jobs WHERE id = $1", job)
    finally:
        await conn.close()


async def _has_credentials(dsn: str, job: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT credentials_enc IS NOT NULL FROM import_jobs WHERE id = $1", job)
    finally:
        await conn.close()


def test_polish_preview_names_the_field_with_a_polish_reason(browser, pair: Pair, tmp_path) -> None:
    path = write_csv(tmp_path, "pl.csv",
                     "first_name,last_name,email,phone,role\n"
                     "Jan,Nowak,jan.nowak@example,,\n"
                     "Ewa,\"Kowal\nska\",ewa@example.com,,\n"
                     "Olga,Lis,olga.lis@example.com,12,\n"
                     "Piotr,Nowy,piotr@example.com,,kierownik\n"
                     "Adam,Mały,adam@example.com,,\n"
                     "Adam,Duży,adam@example.com,,\n")
    browser.get(pair.b.url + "/agents")
    Select(browser.find_element(By.ID, "lang-switch")).select_by_value("pl")
    wait(browser, EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Agenci"))
    upload(browser, pair.b.url, path)
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "tr.row-error")]
    assert len(rows) == 5, rows
    assert "email: musi być poprawnym adresem e-mail" in rows[0], rows
    assert "last_name: znak sterujący U+000A LINE FEED jest niedozwolony" in rows[1], rows
    assert "phone: musi mieć od 3 do 20 cyfr" in rows[2], rows
    assert "role: nieznana rola kierownik" in rows[3], rows
    assert "email: adam@example.com występuje też w wierszu 7" in rows[4], rows
    assert "valid email" not in browser.page_source
    Select(browser.find_element(By.ID, "lang-switch")).select_by_value("en")
    wait(browser, EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "CSV import"))


def test_an_expired_job_is_deleted_by_the_next_upload_on_any_instance(
        browser, pair: Pair, tmp_path) -> None:
    header = "first_name,last_name,email\n"
    old = upload(browser, pair.a.url, write_csv(tmp_path, "old.csv", header + "O,Ld,o@example.com\n"))
    asyncio.run(_expire(pair.dsn, old))
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    assert fetch(f"{pair.a.url}/import/{old}", cookies)[0] == 404
    upload(browser, pair.b.url, write_csv(tmp_path, "new.csv", header + "N,Ew,n@example.com\n"))
    assert asyncio.run(_state(pair.dsn, old)) is None


async def _expire(dsn: str, job: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE import_jobs SET expires_at = now() - interval '1 second' WHERE id = $1", job)
    finally:
        await conn.close()


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_job_whose_instance_stops_is_interrupted_and_changed_nothing(
        browser, pair: Pair, tmp_path, how: str) -> None:
    """SIGKILL: the job's lock ends with B's session and A finds it free. SIGTERM: B
    cancels the import (rolled back) and records the job interrupted itself."""
    login = f"irena.{how.lower()}"
    path = write_csv(tmp_path, "one.csv", f"first_name,last_name,email\nIrena,{how},irena@example.com\n")
    job = upload(browser, pair.a.url, path)
    browser.get(f"{pair.b.url}/import/{job}")
    assert pair.b.proc is not None
    b_folders = f"{imports.FOLDER_PREFIX}{pair.b.proc.pid}-*"

    async def confirm_on_b_and_stop_it_mid_import() -> None:
        # A transaction holding a lock the import's LOCK TABLE users waits for: B's
        # import is then inside its transaction when B stops.
        blocker = await asyncpg.connect(pair.dsn)
        try:
            await blocker.execute("BEGIN; LOCK TABLE users IN ROW EXCLUSIVE MODE")
            browser.find_element(By.ID, "apply-import").click()
            wait(browser, EC.presence_of_element_located((By.ID, "import-progress")))
            await _wait_for_import_waiting(pair.dsn)
            # the plaintext upload was deleted as soon as the importer had read it
            folders = list(Path(tempfile.gettempdir()).glob(b_folders))
            assert len(folders) == 1 and not (folders[0] / imports.UPLOAD_NAME).exists()
            if how == "SIGKILL":
                pair.b.kill()
            else:
                assert pair.b.proc is not None
                pair.b.proc.terminate()
                await asyncio.to_thread(pair.b.proc.wait, 30)
                assert pair.b.proc.returncode == 0, pair.b.log()[-2000:]
        finally:
            await blocker.close()

    asyncio.run(confirm_on_b_and_stop_it_mid_import())
    try:
        browser.get(f"{pair.a.url}/import/{job}")
        wait(browser, EC.presence_of_element_located((By.ID, "import-interrupted")))
        assert "Nothing was imported" in browser.find_element(By.ID, "import-interrupted").text
        assert asyncio.run(_count_login(pair.dsn, login)) == 0
        assert asyncio.run(_state(pair.dsn, job)) == ("interrupted", False, False)
    finally:
        pair.b.start()
    # the killed process's folder is removed by the next start (SIGTERM: by B itself)
    assert not list(Path(tempfile.gettempdir()).glob(b_folders))


async def _wait_for_import_waiting(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + WAIT_S
        while not await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query ILIKE 'LOCK TABLE users%SHARE ROW EXCLUSIVE%'"):
            assert time.monotonic() < deadline, "the import never waited for the users table"
            await asyncio.sleep(0.05)  # polling pg_stat_activity
    finally:
        await conn.close()


async def _count_login(dsn: str, login: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM users WHERE login = $1", login)
    finally:
        await conn.close()


async def _state(dsn: str, job: str) -> tuple[str, bool, bool] | None:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT state, committed_at IS NOT NULL AS committed, upload_enc IS NOT NULL AS upload"
            " FROM import_jobs WHERE id = $1", job)
    finally:
        await conn.close()
    return None if row is None else (row["state"], row["committed"], row["upload"])


# --- pure: the reason of a rejected row, in the page's language -------------------------------


def test_reason_text_translates_the_template_and_a_what_parameter() -> None:
    refused = Refused("first_name", "character %(char)s is not allowed in %(what)s",
                      char="'[' (U+005B LEFT SQUARE BRACKET)", what="a name")
    row = RowResult(2, "error", field="first_name", error=refused.message,
                    reason=refused.template, params=refused.params)
    pl = translations("pl").gettext
    assert imports.reason_text(row, pl) == (
        "znak '[' (U+005B LEFT SQUARE BRACKET) jest niedozwolony w polu: imię lub nazwisko")
    assert imports.reason_text(row, translations("en").gettext) == (
        "character '[' (U+005B LEFT SQUARE BRACKET) is not allowed in a name")
    email = RowResult(4, "error", field="email", error="email: value is not a valid email address",
                      reason="must be a valid e-mail address")
    assert imports.reason_text(email, translations("vi").gettext) == "phải là địa chỉ e-mail hợp lệ"
    # a reason that is not a catalog message: the English, without the field
    plain = RowResult(3, "error", field="login", error="login: the same agent as line 2")
    assert imports.reason_text(plain, pl) == "the same agent as line 2"
