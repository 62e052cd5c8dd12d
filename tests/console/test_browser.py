"""The console in a real browser (headless Chromium from Debian's packages, driven by Selenium): log in, see the
demo tenant's streams, fix the DE-PARA entry that blocks the sales, retry, and see the sales arrive in Bling; a
second user cannot see the first tenant. A failing step saves a screenshot (its path is in the failure message)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hub.console.app import make_app
from hub.runner.service import Service
from hub.sandbox import serve
from hub.store.schema import Route
from sqlalchemy import update

from tests.console.conftest import OTHER_USER, PASSWORD, SECRET, SHOP_USER, refused_sales

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - the skip below says what to install
    webdriver = None  # type: ignore[assignment]

pytestmark = pytest.mark.skipif(
    webdriver is None or CHROMIUM is None or DRIVER is None,
    reason="the browser tests need Debian's chromium and chromium-driver and selenium: run `bash .ci/browser` "
           "(make test does)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}", "--lang=pt-BR"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": "pt-BR,pt"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(DRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def replaced(old: Any) -> bool:
    """Whether the page that held ``old`` is gone. Asked mid-navigation, chromium may answer neither "stale" nor
    "here" but "Node with given id does not belong to the document", which means gone too (``staleness_of``
    raised it: a CI run failed at the retry step on it)."""
    try:
        old.is_enabled()
    except WebDriverException as exc:
        return isinstance(exc, StaleElementReferenceException) or "does not belong to the document" in str(exc)
    return False


class Steps:
    """Each step named; a failing one leaves a screenshot of what the browser showed."""

    def __init__(self, driver: Any, base: str, shots: Path) -> None:
        self.driver, self.base, self.shots = driver, base, shots

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def text(self, element_id: str) -> str:
        return str(self.wait(element_id).text)

    def wait(self, element_id: str) -> Any:
        """The element, once the page that has it is loaded (a click that submits a form returns before that)."""
        return WebDriverWait(self.driver, 30).until(shown.presence_of_element_located((By.ID, element_id)))

    def click(self, element_id: str, then: str) -> None:
        """Click, and wait until the next page (the one with element ``then``) is there."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        self.wait(element_id).click()
        WebDriverWait(self.driver, 30).until(lambda _: replaced(old))
        self.wait(then)

    def shot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        self.driver.get_screenshot_as_file(str(path))
        return path

    def until(self, name: str, check: Any, ceiling: float = 60.0) -> None:
        """Reload until ``check()`` holds; the ceiling only bounds a broken run (nothing is timed)."""
        deadline = time.monotonic() + ceiling
        while True:
            self.driver.refresh()
            try:
                if check():
                    return
            except WebDriverException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: not reached; screenshot {self.shot(name)}")
            time.sleep(0.3)

    def login(self, email: str) -> None:
        self.driver.delete_all_cookies()
        self.open("/login")
        self.driver.find_element(By.ID, "email").send_keys(email)
        self.driver.find_element(By.ID, "password").send_keys(PASSWORD)
        self.click("login", then="tenant")


def cell(steps: Steps, row: str, css: str) -> int:
    return int(steps.driver.find_element(By.ID, row).find_element(By.CSS_SELECTOR, css).text)


def test_an_operator_fixes_the_de_para_in_the_browser_and_the_refused_sales_arrive(rt, tenants, browser, tmp_path):
    shop = tenants["loja"]
    refused_sales(shop, 3)
    assert shop.bling_orders() == {}
    with rt.store.begin() as s:  # no scheduled run competes with the retried operations (the relay sends them)
        s.execute(update(Route).values(next_run_at=None))
    console = serve(make_app(rt, SECRET))
    service = Service(rt, None, threads=2, relay_interval=0.2, scheduler_interval=60)
    service.start()
    shots = Path(os.environ.get("HUB_TEST_SCREENSHOTS", tmp_path / "screenshots"))
    steps = Steps(browser, console.base_url, shots)
    step = "login"
    try:
        steps.login(SHOP_USER)
        step = "streams"
        assert browser.current_url.endswith("/t/loja/routes")
        assert steps.text("tenant") == "loja"
        assert cell(steps, "stream-sales-customers", ".records") >= 0
        assert cell(steps, "stream-sales-sales", ".records") == 3, "the three POS sales are in the store"
        assert cell(steps, "stream-sales-sales", ".failed") >= 3, "and Bling refused them"
        step = "de-para"
        steps.click("mappings-sales", then="save-mappings")
        cash = steps.wait("map:payment_methods:101")
        assert cash.get_attribute("value") == "Dinheiro Vivo"
        assert "não existe no destino" in browser.find_element(By.ID, "table-payment_methods").text
        cash.clear()
        cash.send_keys("Dinheiro")
        steps.click("save-mappings", then="flash")
        assert "DE-PARA salvo" in steps.text("flash")
        step = "retry"
        steps.click("nav-failed", then="retry-all")
        steps.click("retry-all", then="flash")
        assert "voltaram para a fila" in steps.text("flash")
        step = "sales-arrive"
        steps.click("nav-routes", then="stream-sales-sales")
        steps.until("sales-arrive", lambda: cell(steps, "stream-sales-sales", ".on-sink") == 3
                    and cell(steps, "stream-sales-sales", ".failed") == 0)
        assert len(shop.bling_orders()) == 3, "Bling has the three sales"
        steps.shot("routes-after-fix")
        step = "second-user"
        steps.login(OTHER_USER)
        assert browser.current_url.endswith("/t/demo/routes")
        steps.open("/t/loja/routes")
        assert steps.wait("not-found") and "404" in browser.find_element(By.TAG_NAME, "h1").text
        assert not browser.find_elements(By.ID, "stream-sales-sales"), "nothing of loja is shown"
        steps.open("/t/loja/routes/sales/mappings")
        steps.wait("not-found")
        assert not browser.find_elements(By.ID, "map:payment_methods:101")
    except Exception as exc:
        path = steps.shot(f"failed-at-{step}")
        raise AssertionError(f"browser step {step!r} failed ({exc}); screenshot: {path}") from exc
    finally:
        service.stop()
        console.stop()

