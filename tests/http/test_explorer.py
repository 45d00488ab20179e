"""The API explorer page in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium logs in, calls a method over HTTP and over the
WebSocket, subscribes to a topic and reads what the page shows."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from kaiju.runtime.service import App
from kaiju.testing.services import started
from tests.auth.support import PASSWORDS
from tests.ws.conftest import app_services

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# running as root in a container: no sandbox, no GPU, nothing fetched from the network
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
]


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        message = "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("KAIJU_REQUIRE_BROWSER") == "1":  # scripts/test sets it: the test must run
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="kaiju-chromium-")
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _session(driver, url: str, screenshot: Path, publish) -> dict:
    """What a visitor does, in the browser (a thread of its own: Selenium blocks)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 20)
    seen = {}
    driver.get(url)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-method="shop.echo"]')))
    wait.until(EC.text_to_be_present_in_element((By.ID, "ws-state"), "open"))
    seen["guest_methods"] = [b.get_attribute("data-method") for b in driver.find_elements(By.CSS_SELECTOR, "#methods button")]

    driver.find_element(By.ID, "login-username").send_keys("alice")
    driver.find_element(By.ID, "login-password").send_keys(PASSWORDS["alice"])
    driver.find_element(By.ID, "login-button").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "whoami"), "alice"))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-method="shop.mine"]')))

    driver.find_element(By.CSS_SELECTOR, '[data-method="shop.echo"]').click()
    driver.find_element(By.ID, "param-data").send_keys('{"fruit": ["pear", 2]}')
    driver.find_element(By.ID, "call-button").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "result"), "pear"))
    seen["http"] = driver.find_element(By.ID, "result").text

    driver.find_element(By.CSS_SELECTOR, '[data-method="shop.mine"]').click()
    Select(driver.find_element(By.ID, "transport")).select_by_value("ws")
    driver.find_element(By.ID, "call-button").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "result"), "for alice"))
    seen["ws"] = driver.find_element(By.ID, "result").text

    driver.find_element(By.ID, "topic").send_keys("orders.*")
    driver.find_element(By.ID, "subscribe-button").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "result"), "subscribed"))
    publish("orders.7", {"status": "shipped"})
    wait.until(EC.text_to_be_present_in_element((By.ID, "events"), "shipped"))
    seen["events"] = driver.find_element(By.ID, "events").text
    driver.save_screenshot(str(screenshot))
    return seen


async def test_log_in_call_and_subscribe_from_the_explorer_page(browser, tmp_path):
    services = app_services()
    async with started(*services, app=App(name="shop", env="test")) as app:
        server = services[-1]
        loop = asyncio.get_running_loop()

        def publish(topic: str, data: object) -> None:
            asyncio.run_coroutine_threadsafe(app.publish(topic, data), loop).result(10)

        url = server.url.replace(server.rpc_path, server.docs_path)
        shot = Path(os.environ.get("KAIJU_EXPLORER_SCREENSHOT", tmp_path / "explorer.png"))
        seen = await asyncio.to_thread(_session, browser, url, shot, publish)
    assert "shop.echo" in seen["guest_methods"] and "shop.mine" not in seen["guest_methods"]
    assert '"result"' in seen["http"] and "pear" in seen["http"]
    assert "for alice" in seen["ws"]
    assert '"topic": "orders.7"' in seen["events"] or '"topic":"orders.7"' in seen["events"]
    assert shot.stat().st_size > 10_000
