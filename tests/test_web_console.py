"""The web console in a real headless Chromium against the real service, PostgreSQL,
Asterisk and SIPp: log in, create agents with Polish and Vietnamese names through the
form (the live preview shows the derived login), register the phone with the SIP
password the page showed, rotate it, import a CSV with a bad row, switch language,
agent self-service (forced password change, own SIP password with QR code), a POST
without CSRF token refused, a locked-out login.

The tests of this module run in order on one service and one browser."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import urllib.request

import asyncpg
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

from sipprov.pbx import sipp
from tests.test_mailer import body_of
from tests.web_fixtures import (
    ADMIN_PASSWORD,
    AGENT_PASSWORD,
    LOCKED_PASSWORD,
    VI_PASSWORD,
    Console,
    wait,
)

pytest_plugins = ["tests.web_fixtures"]
pytestmark = pytest.mark.pbx

HOST = "127.0.0.1"


def text_of(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def log_in(driver, console: Console, login: str, password: str) -> None:
    driver.delete_all_cookies()
    driver.get(console.url + "/login")
    driver.find_element(By.ID, "login").send_keys(login)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()


def register(console: Console, username: str, password: str) -> sipp.RegisterResult:
    return asyncio.run(sipp.register(HOST, console.cfg.pbx.sip_port, username, password,
                                     realm=console.cfg.asterisk.sip_realm))


def fill(driver, field_id: str, value: str) -> None:
    element = driver.find_element(By.ID, field_id)
    element.clear()
    element.send_keys(value)


def test_admin_logs_in_and_sees_agents(browser, console: Console) -> None:
    log_in(browser, console, "anna.admin", ADMIN_PASSWORD)
    wait(browser, EC.url_to_be(console.url + "/agents"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Agents"
    assert "nguyen-van.an" in browser.page_source
    # the session cookie is HttpOnly and SameSite=Strict
    cookie = browser.get_cookie("sipprov_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"


@pytest.mark.parametrize("first, last, login", [
    ("Łukasz", "Żółć", "lukasz.zolc"),
    ("Trần Thị Bích", "Ngọc", "tran-thi-bich.ngoc"),
])
def test_create_agent_register_and_rotate(browser, console: Console, first: str, last: str,
                                          login: str) -> None:
    browser.get(console.url + "/agents/new")
    fill(browser, "first_name", first)
    fill(browser, "last_name", last)
    wait(browser, EC.text_to_be_present_in_element((By.ID, "preview-login"), login))
    assert text_of(browser, "#preview-caller-id") == login.split(".")[0][0] + "." + login.split(".")[1]
    fill(browser, "email", login + "@example.com")
    browser.find_element(By.ID, "save").click()
    wait(browser, EC.presence_of_element_located((By.ID, "created-login")))
    assert text_of(browser, "#created-login") == login
    assert browser.find_element(By.ID, "applied").get_attribute("class") == "ok"
    username = browser.find_element(By.ID, "sip-username").get_attribute("value")
    password = browser.find_element(By.ID, "sip-password").get_attribute("value")
    assert browser.find_element(By.ID, "web-password").get_attribute("value")
    first_reg = register(console, username, password)
    assert first_reg.ok and first_reg.status == 200, first_reg

    browser.find_element(By.LINK_TEXT, "Open the agent").click()
    browser.find_element(By.ID, "rotate-sip").click()
    wait(browser, EC.presence_of_element_located((By.ID, "sip-password")))
    new_password = browser.find_element(By.ID, "sip-password").get_attribute("value")
    assert new_password != password
    old = register(console, username, password)
    assert not old.ok and old.status in (401, 403), old
    fresh = register(console, username, new_password)
    assert fresh.ok and fresh.status == 200, fresh


def test_rotation_with_credentials_e_mail(browser, console: Console) -> None:
    browser.get(console.url + "/agents?q=ngoc")
    browser.find_element(By.LINK_TEXT, "Trần Thị Bích Ngọc").click()
    browser.find_element(By.ID, "send-sip").click()
    browser.find_element(By.ID, "rotate-sip").click()
    wait(browser, EC.presence_of_element_located((By.ID, "sip-password")))
    password = browser.find_element(By.ID, "sip-password").get_attribute("value")
    assert "The credentials were e-mailed." in browser.page_source
    _sender, rcpts, msg = console.inbox.messages[-1]
    assert rcpts == ["tran-thi-bich.ngoc@example.com"]
    assert password in body_of(msg)


def test_search_ignores_diacritics_and_filters(browser, console: Console) -> None:
    browser.get(console.url + "/agents?q=" + urllib.parse.quote("lukasz zolc"))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.list tbody tr")
    assert len(rows) == 1 and "Łukasz Żółć" in rows[0].text
    browser.get(console.url + "/agents?q=" + urllib.parse.quote("tran thi"))
    assert "Trần Thị Bích Ngọc" in text_of(browser, "table.list tbody")


def test_csv_import_preview_shows_the_bad_row_then_applies(browser, console: Console, tmp_path) -> None:
    csv = tmp_path / "agents.csv"
    csv.write_text(
        "first_name,last_name,email,phone\n"
        "Zofia,Wójcik,zofia.wojcik@example.com,\n"
        "Bad,Row,not-an-e-mail,\n"
        "Łukasz,Żółć,lukasz.zolc@example.com,+48123456789\n",
        encoding="utf-8")
    browser.get(console.url + "/import")
    browser.find_element(By.ID, "file").send_keys(str(csv))
    browser.find_element(By.ID, "continue_on_error").click()
    browser.find_element(By.ID, "preview-import").click()
    wait(browser, EC.presence_of_element_located((By.ID, "import-counts")))
    assert text_of(browser, "#count-create") == "1"
    assert text_of(browser, "#count-update") == "1"
    assert text_of(browser, "#count-error") == "1"
    bad = browser.find_element(By.CSS_SELECTOR, "tr.row-error")
    assert bad.find_element(By.CSS_SELECTOR, "td").text == "3" and "email" in bad.text
    changed = browser.find_element(By.CSS_SELECTOR, "tr.row-update")
    assert "phone" in changed.text and "+48123456789" in changed.text
    browser.find_element(By.ID, "apply-import").click()
    wait(browser, EC.presence_of_element_located((By.ID, "import-done")))
    assert text_of(browser, "#count-create") == "1"
    browser.get(console.url + "/agents?q=zofia")
    assert "zofia.wojcik" in browser.page_source


def test_switch_language(browser, console: Console) -> None:
    browser.get(console.url + "/agents")
    Select(browser.find_element(By.ID, "lang-switch")).select_by_value("pl")
    wait(browser, EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Agenci"))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "pl"
    Select(browser.find_element(By.ID, "lang-switch")).select_by_value("vi")
    wait(browser, EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Nhân viên"))
    browser.get(console.url + "/agents/new")
    assert "Họ" in browser.page_source
    Select(browser.find_element(By.ID, "lang-switch")).select_by_value("en")
    wait(browser, EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Add agent"))


def test_post_without_csrf_token_is_refused(browser, console: Console) -> None:
    cookie = browser.get_cookie("sipprov_session")["value"]
    body = urllib.parse.urlencode({"first_name": "No", "last_name": "Token", "email": "no@example.com",
                                   "role": "agent", "account_type": "standard", "priority": "1",
                                   "outbound_mode": "manual"}).encode()
    request = urllib.request.Request(console.url + "/agents/new", data=body, method="POST",
                                     headers={"Cookie": f"sipprov_session={cookie}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    browser.get(console.url + "/agents?q=token")
    assert "no@example.com" not in browser.page_source


def test_agent_self_service(browser, console: Console) -> None:
    browser.find_element(By.ID, "logout").click()
    wait(browser, EC.url_contains("/login"))
    log_in(browser, console, "nguyen-van.an", AGENT_PASSWORD)
    # forced password change first; nothing else is reachable meanwhile
    wait(browser, EC.url_to_be(console.url + "/password"))
    browser.get(console.url + "/agents")
    assert browser.current_url == console.url + "/password"
    fill(browser, "old_password", AGENT_PASSWORD)
    fill(browser, "new_password", "Changed-Console-2026?")
    fill(browser, "new_password_again", "Changed-Console-2026?")
    browser.find_element(By.CSS_SELECTOR, "form[action='/password'] button").click()
    wait(browser, EC.url_contains("/me"))
    assert str(console.agent_extension) in text_of(browser, "dl.facts")
    assert "not registered" in text_of(browser, "#registered")
    # an agent sees no admin page
    browser.get(console.url + "/agents")
    assert "403" in browser.title or "Not allowed" in browser.page_source
    browser.get(console.url + "/me")
    browser.find_element(By.ID, "rotate-own-sip").click()
    wait(browser, EC.presence_of_element_located((By.ID, "qr")))
    assert browser.find_element(By.ID, "qr").get_attribute("src").startswith("data:image/svg+xml;base64,")
    password = browser.find_element(By.ID, "sip-password").get_attribute("value")
    link = browser.find_element(By.ID, "provisioning-link").get_attribute("value")
    reg = register(console, str(console.agent_extension), password)
    assert reg.ok and reg.status == 200, reg
    browser.get(console.url + "/me")
    assert "is registered" in text_of(browser, "#registered")
    # the Linphone provisioning link works once and holds no plaintext password
    path = urllib.parse.urlsplit(link).path
    status, xml = console.get(path)
    text = xml.decode()
    assert status == 200, text
    assert f'<entry name="username" overwrite="true">{console.agent_extension}<' in text
    assert password not in text and '<entry name="ha1"' in text
    assert console.get(path)[0] == 404


def test_locked_out_login(browser, console: Console) -> None:
    # The service is configured with 3 free attempts and a lockout at 3 failures.
    for _ in range(3):
        log_in(browser, console, "lena.locked", "wrong password")
        wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "p.error")))
        assert text_of(browser, "p.error") == "Wrong login or password."

    log_in(browser, console, "lena.locked", LOCKED_PASSWORD)
    wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "p.error")))
    assert "Too many failed logins" in text_of(browser, "p.error")
    assert browser.get_cookie("sipprov_session") is None


def test_form_errors_stand_next_to_their_fields(browser, console: Console) -> None:
    log_in(browser, console, "anna.admin", ADMIN_PASSWORD)
    wait(browser, EC.url_to_be(console.url + "/agents"))
    browser.get(console.url + "/agents/new")
    fill(browser, "first_name", "Jan")
    fill(browser, "email", "not-an-e-mail")
    fill(browser, "extension", "5")  # outside the pool's range
    browser.find_element(By.ID, "save").click()
    wait(browser, EC.presence_of_element_located((By.ID, "form-errors")))
    for name in ("last_name", "email"):
        field = browser.find_element(By.ID, name)
        assert field.get_attribute("aria-invalid") == "true"
        assert f"{name}-error" in field.get_attribute("aria-describedby")
        assert browser.find_element(By.ID, f"{name}-error").text
    assert browser.find_element(By.ID, "first_name").get_attribute("value") == "Jan"


def test_keyboard_only_login(browser, console: Console) -> None:
    from selenium.webdriver.common.keys import Keys

    browser.delete_all_cookies()
    browser.get(console.url + "/login")
    assert browser.switch_to.active_element.get_attribute("id") == "login"  # autofocus
    browser.switch_to.active_element.send_keys("anna.admin", Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "password"
    browser.switch_to.active_element.send_keys(ADMIN_PASSWORD, Keys.ENTER)
    wait(browser, EC.url_to_be(console.url + "/agents"))
    # the first Tab on a page reaches the skip link, which moves focus to the content
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("class") == "skip"
    headers = browser.execute_script("return fetch('/agents').then(r => r.headers.get("
                                     "'Content-Security-Policy'))")
    assert "script-src 'self'" in headers and "unsafe-inline" not in headers
    assert browser.find_elements(By.CSS_SELECTOR, "script:not([src])") == []


def test_console_opens_in_the_users_language(browser, console: Console) -> None:
    """Issue 16: a Vietnamese user's console is Vietnamese whatever the browser says; a
    switch lasts for the session, the next login opens in the user's language again."""
    log_in(browser, console, "minh-chau.pham", VI_PASSWORD)
    wait(browser, EC.url_to_be(console.url + "/me"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Tài khoản của tôi"
    assert "Tiếng Việt" in text_of(browser, "dl.facts")
    Select(browser.find_element(By.ID, "lang-switch")).select_by_value("pl")
    wait(browser, EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Moje konto"))
    browser.find_element(By.ID, "logout").click()
    wait(browser, EC.url_contains("/login"))
    log_in(browser, console, "minh-chau.pham", VI_PASSWORD)
    wait(browser, EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Tài khoản của tôi"))


def test_asterisk_page_shows_what_is_held_out(browser, console: Console) -> None:
    """A value written straight into the database that cannot render: the applier holds
    that agent out of Asterisk, the Asterisk page and the agent's page say so, and
    correcting it in the form releases it."""
    async def corrupt() -> int:
        conn = await asyncpg.connect(console.dsn)
        try:
            agent_id = await conn.fetchval("UPDATE users SET caller_id_name = E'evil\\n[x]'"
                                           " WHERE login = 'lukasz.zolc' RETURNING id")
            await conn.execute(
                "WITH v AS (UPDATE config_state SET version = version + 1 WHERE id = 1 RETURNING version)"
                " SELECT pg_notify('sipprov_config', version::text) FROM v")
            return agent_id
        finally:
            await conn.close()

    agent_id = asyncio.run(corrupt())
    log_in(browser, console, "anna.admin", ADMIN_PASSWORD)
    wait(browser, EC.url_to_be(console.url + "/agents"))

    def held_out(driver) -> bool:
        driver.get(console.url + "/asterisk")
        return bool(driver.find_elements(By.ID, "held-out"))

    wait(browser, held_out)
    assert f"/agents/{agent_id}" in browser.find_element(By.ID, "held-out").get_attribute("innerHTML")
    browser.get(f"{console.url}/agents/{agent_id}")
    assert browser.find_element(By.ID, "quarantine").text
    browser.get(f"{console.url}/agents/{agent_id}/edit")
    fill(browser, "caller_id", "l.zolc")
    browser.find_element(By.ID, "save").click()
    wait(browser, EC.url_contains(f"/agents/{agent_id}?done=saved"))
    wait(browser, lambda d: not held_out(d))


def test_asterisk_page_lists_the_nodes(browser, console: Console) -> None:
    """The Asterisk nodes table: the one node of a config without [[asterisk.nodes]],
    with the applier's view of it (docs/scale-out.md)."""
    log_in(browser, console, "anna.admin", ADMIN_PASSWORD)
    wait(browser, EC.url_to_be(console.url + "/agents"))
    browser.get(console.url + "/asterisk")
    rows = browser.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")
    cells = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows]
    assert [c[0] for c in cells] == ["default"], cells
    assert cells[0][1] == "—"   # no site


def test_asterisk_page_names_contact_states_in_words(browser, console: Console) -> None:
    """A registered phone's state in the admin's words ("registered, not probed"), not
    Asterisk's "NonQualified" (kept in the cell's title)."""
    password = "Contact-State-2026"
    ext, realm = console.agent_extension, console.cfg.asterisk.sip_realm

    async def set_digest() -> None:
        conn = await asyncpg.connect(console.dsn)
        try:
            await conn.execute(
                "UPDATE users SET sip_ha1_md5 = md5($2), sip_ha1_sha256 = NULL WHERE id = $1",
                console.agent_id, f"{ext}:{realm}:{password}")
            await conn.execute(
                "WITH v AS (UPDATE config_state SET version = version + 1 WHERE id = 1 RETURNING version)"
                " SELECT pg_notify('sipprov_config', version::text) FROM v")
        finally:
            await conn.close()

    asyncio.run(set_digest())
    deadline = time.monotonic() + 30
    while not (reg := register(console, str(ext), password)).ok and time.monotonic() < deadline:
        time.sleep(0.2)
    assert reg.ok, reg
    log_in(browser, console, "anna.admin", ADMIN_PASSWORD)
    wait(browser, EC.url_to_be(console.url + "/agents"))
    browser.get(console.url + "/asterisk")
    rows = browser.find_elements(By.CSS_SELECTOR, "#contacts tbody tr")
    mine = [r for r in rows if r.find_element(By.TAG_NAME, "td").text == str(ext)]
    assert mine, [r.text for r in rows]
    state = mine[0].find_elements(By.TAG_NAME, "td")[3]
    assert state.text == "registered, not probed"
    assert state.get_attribute("title") == "NonQualified"


def test_licence_limit_and_departments(browser, console: Console) -> None:
    log_in(browser, console, "anna.admin", ADMIN_PASSWORD)
    wait(browser, EC.url_to_be(console.url + "/agents"))
    browser.get(console.url + "/directory")
    fill(browser, "dept-name", "Kraków")
    browser.find_element(By.CSS_SELECTOR, "form[action='/directory/departments'] button").click()
    wait(browser, EC.url_contains("done=departments"))
    assert "Kraków" in text_of(browser, "#departments table")
    # a licence limit of "standard" at its current use: the next create is refused there
    used = text_of(browser, "#account_types tbody tr").split()[1]
    fill(browser, "limit-1", used)
    browser.find_element(By.CSS_SELECTOR, "#account_types tbody form button").click()
    wait(browser, EC.url_contains("done=account_types"))
    assert f"{used} / {used}" in text_of(browser, "#account_types tbody tr")
    browser.get(console.url + "/agents/new")
    fill(browser, "first_name", "Over")
    fill(browser, "last_name", "Limit")
    fill(browser, "email", "over@example.com")
    Select(browser.find_element(By.ID, "department")).select_by_value("Kraków")
    browser.find_element(By.ID, "save").click()
    wait(browser, EC.presence_of_element_located((By.ID, "form-errors")))
    assert "licence limit" in text_of(browser, "#form-errors") or \
        "licence limit" in browser.find_element(By.ID, "account_type-error").text
    browser.get(console.url + "/directory")
    fill(browser, "limit-1", "")
    browser.find_element(By.CSS_SELECTOR, "#account_types tbody form button").click()
    wait(browser, EC.url_contains("done=account_types"))
    assert "∞" in text_of(browser, "#account_types tbody tr")
    # an unused department goes at once
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Delete department Kraków']").click()
    wait(browser, EC.url_contains("done=departments"))
    assert "Kraków" not in text_of(browser, "#departments table")


def test_deactivate_and_reactivate_button(browser, console: Console) -> None:
    browser.get(f"{console.url}/agents/{console.agent_id}")
    wait(browser, EC.presence_of_element_located((By.ID, "toggle-active")))
    assert text_of(browser, "#toggle-active") == "Deactivate"
    browser.find_element(By.ID, "toggle-active").click()
    wait(browser, EC.presence_of_element_located((By.ID, "deactivated")))
    assert text_of(browser, "#toggle-active") == "Reactivate"
    browser.find_element(By.ID, "toggle-active").click()
    wait(browser, EC.text_to_be_present_in_element((By.ID, "toggle-active"), "Deactivate"))
    assert not browser.find_elements(By.ID, "deactivated")


async def _sql(console: Console, query: str, *args: object) -> object:
    conn = await asyncpg.connect(console.dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


def _create_in_role(console: Console, role: str) -> tuple[int, str]:
    """An agent with a SIP account in `role`, through the agent service."""
    from sipprov.agents import service as agents
    from sipprov.agents.models import AgentCreate
    from sipprov.db import database
    from sipprov.db.transaction import run

    async def go() -> tuple[int, str]:
        pool = await database.create_pool(console.dsn, console.cfg.database)
        try:
            made = await run(pool, agents.create_agent, console.cfg, AgentCreate(
                first_name="Bartosz", last_name="Nocny", email="bartosz.nocny@example.com",
                role=role), "test")
        finally:
            await pool.close()
        assert made.agent.extension is not None
        return made.agent.id, made.agent.login

    return asyncio.run(go())


def test_roles_create_edit_confirm_and_delete(browser, console: Console) -> None:
    log_in(browser, console, "anna.admin", ADMIN_PASSWORD)
    wait(browser, EC.url_to_be(console.url + "/agents"))
    browser.get(console.url + "/directory")
    browser.find_element(By.ID, "manage-roles").click()
    wait(browser, EC.url_to_be(console.url + "/directory/roles"))
    # builtin roles cannot be deleted: no button
    assert not browser.find_elements(By.ID, "delete-role-agent")
    fill(browser, "role-name", "night-shift")
    fill(browser, "role-label", "Night")
    browser.find_element(By.ID, "role-sip").click()
    browser.find_element(By.ID, "create-role").click()
    wait(browser, EC.url_contains("done=created"))
    assert "Night" in text_of(browser, "#role-night-shift")
    # the label changes on the edit page
    browser.find_element(By.CSS_SELECTOR, "#role-night-shift a[href='/directory/roles/night-shift']").click()
    wait(browser, EC.presence_of_element_located((By.ID, "save-role")))
    fill(browser, "role-label", "Night shift")
    browser.find_element(By.ID, "save-role").click()
    wait(browser, EC.url_contains("done=saved"))
    assert "Night shift" in text_of(browser, "#role-night-shift")

    # sip_allowed off while an agent of the role has a SIP account: refused until confirmed
    agent_id, login = _create_in_role(console, "night-shift")
    browser.get(console.url + "/directory/roles/night-shift")
    sip = browser.find_element(By.ID, "role-sip")
    assert sip.is_selected()
    sip.click()
    browser.find_element(By.ID, "save-role").click()
    wait(browser, EC.presence_of_element_located((By.ID, "confirm-role-change")))
    assert "lose their SIP account: 1" in text_of(browser, "#confirm-what")
    assert text_of(browser, "#losing") == login
    has_sip = "SELECT r.sip_allowed AND u.extension IS NOT NULL FROM users u JOIN roles r" \
              " ON r.id = u.role_id WHERE u.id = $1"
    assert asyncio.run(_sql(console, has_sip, agent_id)) is True  # nothing changed yet
    browser.find_element(By.ID, "confirm-role-change").click()
    wait(browser, EC.url_contains("done=saved"))
    assert asyncio.run(_sql(console, "SELECT extension FROM users WHERE id = $1", agent_id)) is None
    row = text_of(browser, "#role-night-shift")
    assert "Night shift" in row and row.split()[3] == "no", row  # label, key, then SIP

    # a role with users is not deleted; the page says how many
    browser.find_element(By.ID, "delete-role-night-shift").click()
    wait(browser, EC.presence_of_element_located((By.ID, "delete-error")))
    assert "still has users (1)" in text_of(browser, "#delete-error")
    assert browser.find_elements(By.ID, "role-night-shift")
    # an empty role goes at once
    fill(browser, "role-name", "temp-role")
    browser.find_element(By.ID, "create-role").click()
    wait(browser, EC.url_contains("done=created"))
    browser.find_element(By.ID, "delete-role-temp-role").click()
    wait(browser, EC.url_contains("done=deleted"))
    assert not browser.find_elements(By.ID, "role-temp-role")
    audit = "SELECT count(*) FROM audit_log WHERE entity = 'role' AND actor = 'web:anna.admin'"
    assert asyncio.run(_sql(console, audit)) == 5  # 2 creates, 2 updates, 1 delete


def test_admin_rotation_shows_qr_and_one_time_link(browser, console: Console) -> None:
    browser.get(f"{console.url}/agents/{console.agent_id}")
    browser.find_element(By.ID, "rotate-sip").click()
    wait(browser, EC.presence_of_element_located((By.ID, "qr")))
    assert browser.find_element(By.ID, "qr").get_attribute("src").startswith("data:image/svg+xml;base64,")
    password = browser.find_element(By.ID, "sip-password").get_attribute("value")
    link = browser.find_element(By.ID, "provisioning-link").get_attribute("value")
    path = urllib.parse.urlsplit(link).path
    status, xml = console.get(path)
    assert status == 200, xml
    assert f'<entry name="username" overwrite="true">{console.agent_extension}<' in xml.decode()
    assert password not in xml.decode()
    assert console.get(path)[0] == 404


def test_queue_page_names_a_queue_without_a_label_of_its_own_once(browser, console: Console) -> None:
    log_in(browser, console, "anna.admin", ADMIN_PASSWORD)
    wait(browser, EC.url_to_be(console.url + "/agents"))
    browser.get(console.url + "/queues")
    fill(browser, "queue-name", "hotline")    # no label of its own: the name is the label
    browser.find_element(By.CSS_SELECTOR, "form[action='/queues'] button[type=submit]").click()
    wait(browser, EC.url_contains("done="))
    browser.get(console.url + "/queues/hotline")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Queue hotline"
