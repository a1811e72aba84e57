"""Swagger UI in a real browser, through the gateway prefix, in both modes (docs/looking-around.md):
Debian's Chromium (headless) driven by selenium through Debian's chromedriver — no browser download, no
CDN (the assets come from the service itself). The page lists the operations, "Authorize" logs the demo
customer in with the OAuth2 password flow at /user-service/auth/login, and "Try it out" on GET /orders
answers 200."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from mart_testkit.browser import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]

WAIT_S = 60  # a busy CI machine: generous, and every wait ends on a positive signal


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "Debian's chromium and chromium-driver are needed (scripts/infra/tools.sh installs them)"
    )
    with tempfile.TemporaryDirectory(prefix="mart-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in ("--headless", *CHROMIUM_FLAGS, "--window-size=1400,1000", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
        try:
            yield driver
        finally:
            driver.quit()


def wait(driver: WebDriver) -> WebDriverWait:
    return WebDriverWait(driver, WAIT_S)


def test_swagger_lists_operations_authorizes_and_tries_get_orders(mart: Any, browser: WebDriver) -> None:
    browser.delete_all_cookies()
    browser.get(f"{mart.gateway_url}/order-service/docs")
    # the operations, rendered by Swagger UI's JavaScript (served by the service, not a CDN)
    get_orders = wait(browser).until(
        ec.presence_of_element_located(
            (By.XPATH, "//div[contains(@class,'opblock-get')][.//*[@data-path='/orders']]")
        )
    )
    paths = {e.get_attribute("data-path") for e in browser.find_elements(By.CSS_SELECTOR, "[data-path]")}
    assert {"/orders", "/orders/{order_id}", "/orders/{order_id}/cancel"} <= paths, paths

    # Authorize: the OAuth2 password flow against the user service, through the gateway
    browser.find_element(By.CSS_SELECTOR, "button.authorize").click()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "oauth_username"))).send_keys(
        mart.creds.customer.email
    )
    browser.find_element(By.ID, "oauth_password").send_keys(mart.creds.customer.password)
    browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper button.authorize").click()
    wait(browser).until(
        ec.presence_of_element_located(
            (By.XPATH, "//div[contains(@class,'modal-ux')]//button[normalize-space()='Logout']")
        )
    )
    errors = browser.find_elements(By.CSS_SELECTOR, ".modal-ux .errors")
    assert not [e.text for e in errors if e.text.strip()], [e.text for e in errors]
    browser.find_element(By.CSS_SELECTOR, ".modal-ux button.close-modal").click()
    wait(browser).until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))

    # Try it out: GET /orders with the token Swagger UI now holds
    get_orders.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait(browser).until(lambda _d: get_orders.find_elements(By.CSS_SELECTOR, "button.try-out__btn"))[
        0
    ].click()
    wait(browser).until(lambda _d: get_orders.find_elements(By.CSS_SELECTOR, "button.execute"))[0].click()
    live = ".live-responses-table tr.response .response-col_status"
    status = wait(browser).until(
        lambda _d: next((e for e in get_orders.find_elements(By.CSS_SELECTOR, live) if e.text.strip()), None)
    )
    assert status.text.strip().startswith("200"), status.text
    body = get_orders.find_element(
        By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_description"
    )
    assert '"items"' in body.text, body.text[:500]
