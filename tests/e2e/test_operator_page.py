"""The operator page in a real headless browser: Debian's chromium through chromium-driver
(Selenium), with WebDriver virtual authenticators standing in for two people's FIDO2
security keys (CTAP2, user verification). The whole ceremony runs as people run it: the
bootstrap operator registers their key, sponsors a second operator who registers theirs,
both approve that registration, and then both approve a tenant's creation, seeing on the
page exactly what it will do. Served on localhost (a secure context for WebAuthn)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import uvicorn

from shared.api.app import create_app
from shared.governance.bootstrap import bootstrap_operator
from shared.platform import build_platform
from shared.settings import Settings

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian's chromium and chromium-driver are not installed "
                                                         "(make test installs them: apt-get install chromium "
                                                         "chromium-driver)"),
]
WAIT = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, object]]:
    settings = Settings.from_env({"ACCRUE_DATA_DIR": str(tmp_path / "data"), "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"})
    platform = build_platform(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(platform), host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://localhost:{port}", platform
    server.should_exit = True
    thread.join(timeout=10)
    platform.close()


class Person:
    """One operator at their own browser, with their own security key plugged in."""

    def __init__(self, base: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.virtual_authenticator import VirtualAuthenticatorOptions

        self.profile = tempfile.mkdtemp(prefix="accrue-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={self.profile}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        self.driver.get(f"{base}/operator")
        self.driver.add_virtual_authenticator(VirtualAuthenticatorOptions(
            protocol="ctap2", transport="usb", has_resident_key=False, has_user_verification=True,
            is_user_consenting=True, is_user_verified=True))

    def sign_in(self, api_key: str) -> None:
        field = self.driver.find_element("id", "api-key")
        field.clear()
        field.send_keys(api_key)
        # Cleared first: a second sign-in must wait for its own answer, not pass on the last one's.
        self.driver.execute_script("document.getElementById('whoami').textContent = ''")
        self.driver.find_element("id", "use-key").click()
        self.wait_text("whoami", "Signed in as")

    def wait_text(self, element_id: str, text: str) -> str:
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, WAIT).until(lambda d: text in d.find_element("id", element_id).text)
        return self.driver.find_element("id", element_id).text

    def register(self, newcomer: str = "") -> str:
        self.driver.find_element("id", "newcomer-name").clear()
        if newcomer:
            self.driver.find_element("id", "newcomer-name").send_keys(newcomer)
        self.driver.execute_script("document.getElementById('status').textContent = ''")
        self.driver.find_element("id", "register-key").click()
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, WAIT).until(lambda d: d.find_element("id", "status").text)
        return self.driver.find_element("id", "status").text

    def decide(self, request_id: str, verb: str = "approve") -> str:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver.execute_script("document.getElementById('status').textContent = ''")
        self.driver.find_element("id", "refresh").click()
        selector = f".request[data-id='{request_id}'] button.{verb}"
        WebDriverWait(self.driver, WAIT).until(lambda d: self._click(selector))
        WebDriverWait(self.driver, WAIT).until(lambda d: d.find_element("id", "status").text)
        return self.driver.find_element("id", "status").text

    def _click(self, selector: str) -> bool:
        """Click the element once it is there; False (try again) while the list is being
        re-rendered by the refresh and the element found is replaced (seen under load)."""
        from selenium.common.exceptions import StaleElementReferenceException

        try:
            found = self.driver.find_elements("css selector", selector)
            if not found:
                return False
            found[0].click()
            return True
        except StaleElementReferenceException:
            return False

    def shown(self, request_id: str) -> str:
        self.driver.find_element("id", "refresh").click()
        return self.wait_text("requests", request_id) and \
            self.driver.find_element("css selector", f".request[data-id='{request_id}']").text

    def quit(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)


def test_two_operators_run_the_whole_ceremony_in_a_browser(served) -> None:
    base, platform = served
    first = bootstrap_operator(platform, "ana", None)  # `accrue bootstrap-operator --name ana`
    ana, ben = Person(base), Person(base)
    try:
        # Ana registers her security key: the bootstrap operator's first key, alone, once.
        ana.sign_in(first.key.secret_key)
        assert "registered (bootstrap)" in ana.register(), ana.driver.find_element("id", "status").text
        assert len(platform.operators.get(first.operator_id)["credentials"]) == 1

        # Ben, at his own browser with his own key, in the session Ana opened for him: his
        # registration is a request that Ana approves with her key and he with his.
        ben.sign_in(first.key.secret_key)
        filed = ben.register("ben")
        assert "filed as request" in filed, filed
        enrol = filed.split("request ")[1].split(":")[0]
        assert "operator.register" in ana.shown(enrol)
        assert "is pending" in ana.decide(enrol)
        executed = ben.decide(enrol)
        assert "is executed" in executed, executed
        ben_key = executed.split('"apiKey":"')[1].split('"')[0]
        ben.sign_in(ben_key)
        assert "Signed in as ben" in ben.driver.find_element("id", "whoami").text

        # A tenant: Ana requests it (API or CLI); both see exactly what it will do and approve.
        filed = httpx.post(f"{base}/v1/tenants", json={"tenantId": "browsed", "name": "Browsed Co"},
                           headers={"Authorization": f"Bearer {first.key.secret_key}"}, timeout=30)
        assert filed.status_code == 202, filed.text
        request_id = filed.json()["id"]
        shown = ben.shown(request_id)
        assert "tenant.create of tenant browsed" in shown and "Browsed Co" in shown
        assert "is pending" in ana.decide(request_id)
        assert not platform.tenants.exists("browsed")
        done = ben.decide(request_id)
        assert "is executed" in done and '"adminKey"' in done, done
        assert platform.tenants.exists("browsed")
        approvals = platform.approvals.get(request_id)["approvals"]
        assert approvals[0]["operatorId"] == first.operator_id != approvals[1]["operatorId"]
        assert approvals[0]["credentialId"] != approvals[1]["credentialId"]

        # A rejection with the key ends a request for good.
        filed = httpx.post(f"{base}/v1/tenants", json={"tenantId": "unwanted", "name": "Unwanted"},
                           headers={"Authorization": f"Bearer {first.key.secret_key}"}, timeout=30)
        assert "is rejected" in ben.decide(filed.json()["id"], "reject")
        assert platform.approvals.get(filed.json()["id"])["status"] == "rejected"
    finally:
        ana.quit()
        ben.quit()
