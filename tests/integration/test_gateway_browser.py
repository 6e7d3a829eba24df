"""The desk page in Debian's headless Chromium, driven by Selenium through chromedriver: the
recipient opens its page, answers an alert with a button, and the answer arrives on its
feedback topic, in the gateway's metrics, and (judged by the feedback stage) as its status."""

from __future__ import annotations

import base64
import shutil
import time

import pytest

from tests.integration.gateway_helpers import issue_tokens, metric, route, start_gateway, stop
from tests.integration.kafka_helpers import end_offsets, read_since
from threatroute import topics

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="Debian's chromium and chromium-driver "
                                       "(deploy/system-packages.txt) are not installed")


@pytest.fixture(scope="module")
def desk(kafka_env, bootstrap, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    world, pipeline, log = route(kafka_env, bootstrap, tmp, {"ga": 3, "gb": 1})
    issue_tokens(world, tmp)
    gateway = start_gateway(world.env, tmp)
    try:
        yield world, gateway, pipeline
    finally:
        stop(gateway.process, gateway.log)
        stop(pipeline, log)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_an_abuse_desk_answers_an_alert_with_a_button(desk, browser, bootstrap, tmp_path):
    from selenium.webdriver.common.by import By

    world, gateway, _ = desk
    a, b = world.rid("ga"), world.rid("gb")
    credentials = base64.b64encode(f"{a}:{world.tokens[a]}".encode()).decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                            {"headers": {"Authorization": f"Basic {credentials}"}})
    feedback_topic = topics.FEEDBACK  # plaintext broker: the shared topic (secure: feedback.<id>)
    since = end_offsets(bootstrap, feedback_topic)
    since_status = end_offsets(bootstrap, topics.STATUS)

    browser.get(f"{gateway.url}/desk")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-alert-id]")
    shown = {row.get_attribute("data-alert-id") for row in rows}
    assert shown == {x["alert_id"] for x in world.alerts[a]}  # its own open alerts, no one else's
    assert world.alerts[b][0]["alert_id"] not in browser.page_source
    row = rows[0]
    alert_id = row.get_attribute("data-alert-id")
    alert = next(x for x in world.alerts[a] if x["alert_id"] == alert_id)
    # what it is and why it was sent
    assert alert["indicator"]["source"]["ip"] in row.text and alert["reasons"][0] in row.text
    browser.save_screenshot(str(tmp_path / "desk.png"))
    labels = [button.text for button in row.find_elements(By.TAG_NAME, "button")]
    assert labels == ["Acknowledged", "Remediated", "False positive", "Not ours", "Won't fix"]

    row.find_element(By.XPATH, ".//button[@value='remediated']").click()
    notice = _after_post(browser, "notice")
    assert alert_id in notice.text and "remediated" in notice.text

    (record,) = [v for k, v in read_since(bootstrap, feedback_topic, since, idle=2.0)
                 if k == alert_id.encode()]
    assert (record["recipient"], record["status"], record["alert_id"]) == (a, "remediated",
                                                                          alert_id)
    assert metric(gateway.metrics(), "threatroute_gateway_answers_total", path="page",
                  status="remediated") == 1
    ANSWERED.update(alert_id=alert_id, since_status=since_status)


ANSWERED: dict = {}  # what the button test answered, for the test of its judgement


def _after_post(browser, element_id: str, seconds: float = 45.0):
    """The element `element_id` of the page the form's POST leads to. A click returns without
    waiting for the POST's redirect (the gateway answers it once the broker has the record:
    up to a few seconds on a busy machine), so wait for the new page rather than reading the
    old one; if it never comes, show what the browser has."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, seconds, poll_frequency=0.2).until(
            lambda driver: (driver.find_elements(By.ID, element_id) or [None])[0])
    except TimeoutException:
        pytest.fail(f"no #{element_id} after {seconds:.0f} s at {browser.current_url}:\n"
                    f"{browser.page_source[:2000]}")


def test_the_answer_is_judged_by_the_feedback_stage_and_closes_the_alert(desk, browser,
                                                                         bootstrap):
    from selenium.webdriver.common.by import By

    _, gateway, _ = desk
    if not ANSWERED:
        pytest.fail("the button test did not answer an alert, so there is nothing to judge")
    alert_id, since_status = ANSWERED["alert_id"], ANSWERED["since_status"]
    statuses = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not statuses:
        statuses = [v for k, v in read_since(bootstrap, topics.STATUS, since_status, idle=1.0)
                    if k == alert_id.encode()]
    assert statuses and statuses[-1]["status"] == "remediated"
    browser.get(f"{gateway.url}/desk?state=all")
    deadline = time.monotonic() + 10
    while "remediated" not in browser.find_element(By.ID, f"alert-{alert_id}").text:
        assert time.monotonic() < deadline
        time.sleep(0.5)
        browser.refresh()
    browser.get(f"{gateway.url}/desk")  # answered as dealt with: no longer open
    assert alert_id not in {r.get_attribute("data-alert-id")
                            for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-alert-id]")}


def test_a_form_from_elsewhere_is_refused(desk):
    world, gateway, _ = desk
    a = world.rid("ga")
    alert_id = world.alerts[a][-1]["alert_id"]
    with gateway.client(world.tokens[a]) as client:
        response = client.post("/desk/answer", data={"alert_id": alert_id,
                                                     "status": "not_ours", "csrf": "forged"})
        assert response.status_code == 403
