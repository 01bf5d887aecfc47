"""The console page in headless Chromium against the live stack after a demo run: a call id
opens the call's waterfall with the turn latencies Jaeger holds and its log lines from Loki, a
trace id opens the trace, and the screenshots the README shows are saved into docs/."""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from stack.settings import StackSettings
from tests.stack.api_support import (
    ADMIN_KEY,
    LiveServer,
    api_settings,
    serve_in_thread,
)
from tests.stack.test_e2e_demo import DemoRun, jaeger_traces_of_call, tags

pytestmark = pytest.mark.stack
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def run(api_demo: DemoRun) -> DemoRun:
    return api_demo


@pytest.fixture(scope="module")
def server(stack: StackSettings, run: DemoRun) -> Iterator[LiveServer]:
    yield from serve_in_thread(api_settings(stack, run.service, feed_interval_s=1.0))


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium and chromedriver are not installed: run `make stack-build`")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,2400"):  # fmt: skip
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    yield browser
    browser.quit()


def wait(browser: WebDriver, what: str, condition: Any, timeout_s: float = 30) -> Any:
    return WebDriverWait(browser, timeout_s).until(condition, message=what)


def _element_screenshot(browser: WebDriver, element_id: str, name: str) -> None:
    element = browser.find_element(By.ID, element_id)
    browser.execute_script("arguments[0].scrollIntoView()", element)
    element.screenshot(str(DOCS / name))


def loki_lines(stack: StackSettings, run: DemoRun, call_id: str) -> list[str]:
    query = urllib.parse.urlencode({
        "query": f'{{service_name="{run.service}"}} | voice_call_id="{call_id}"',
        "start": str(int((run.started - 60) * 1e9)), "limit": "500",
    })  # fmt: skip
    url = stack.url("loki", "HTTP API", f"/loki/api/v1/query_range?{query}")
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    return [line for s in body["data"]["result"] for _, line in s["values"]]


def test_a_call_id_opens_its_waterfall_logs_and_trace(
    stack: StackSettings, run: DemoRun, server: LiveServer, browser: WebDriver
) -> None:
    browser.get(server.url + "/console/")
    browser.find_element(By.ID, "key-input").send_keys(ADMIN_KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait(browser, "the live overview", lambda b: "ms" in b.find_element(By.ID, "turn-latency").text)
    wait(browser, "recent calls", lambda b: b.find_elements(By.CSS_SELECTOR, "#recent .call-link"))
    wait(
        browser, "slowest turns", lambda b: b.find_elements(By.CSS_SELECTOR, "#slowest .trace-link")
    )
    browser.save_screenshot(str(DOCS / "console-overview.png"))

    call = max(run.calls, key=lambda c: len(c["latencies"]))
    spans = [s for t in jaeger_traces_of_call(stack, run, call["call_id"]) for s in t["spans"]]
    in_jaeger = sorted(
        (int(tags(s)["voice.turn.number"]), tags(s).get("voice.turn.latency"))
        for s in spans
        if s["operationName"] == "voice.turn"
    )
    field = browser.find_element(By.ID, "call-input")
    field.clear()
    field.send_keys(call["call_id"])
    browser.find_element(By.ID, "call-open").click()
    turns = wait(
        browser,
        "the call's waterfall",
        lambda b: (
            (rows := b.find_elements(By.CSS_SELECTOR, "#waterfall .turn"))
            and len(rows) == len(in_jaeger)
            and rows
        ),
    )
    shown = []
    for row in turns:
        latency = row.find_element(By.CSS_SELECTOR, ".latency").get_attribute("data-seconds")
        shown.append(
            (int(row.get_attribute("data-turn")), None if latency == "null" else float(latency))
        )
        if latency != "null":
            stages = {
                b.get_attribute("data-stage")
                for b in row.find_elements(By.CSS_SELECTOR, ".bar[data-stage]")
            }
            assert {"stt", "llm", "tts"} <= stages
            assert (
                f"{round(float(latency) * 1000)} ms"
                in row.find_element(By.CSS_SELECTOR, ".latency").text
            )
    assert shown == in_jaeger

    logs = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#logs .log-line")]
    stored = loki_lines(stack, run, call["call_id"])
    assert len(logs) == len(stored) == call["log_lines"]
    for line in stored:
        assert any(shown_line.endswith(line) for shown_line in logs), line
    _element_screenshot(browser, "explorer", "console-call.png")

    browser.find_element(By.CSS_SELECTOR, "#logs .trace-link").click()
    wait(browser, "the trace view", lambda b: b.find_element(By.ID, "trace-view").is_displayed())
    assert browser.find_element(By.ID, "trace-id").text == call["trace_id"]
    rows = wait(
        browser, "the trace's spans", lambda b: b.find_elements(By.CSS_SELECTOR, ".span-row")
    )
    assert len(rows) == len(spans)
    assert "#trace=" + call["trace_id"] in browser.current_url
    _element_screenshot(browser, "explorer", "console-trace.png")


def test_a_trace_id_in_the_slowest_turns_opens_that_trace(
    run: DemoRun, server: LiveServer, browser: WebDriver
) -> None:
    browser.get(server.url + "/console/")  # the key stays in this tab's session storage
    link = wait(
        browser, "slowest turns", lambda b: b.find_elements(By.CSS_SELECTOR, "#slowest .trace-link")
    )[0]
    trace_id = link.text
    link.click()
    wait(browser, "the trace view", lambda b: b.find_element(By.ID, "trace-id").text == trace_id)
    assert trace_id in {c["trace_id"] for c in run.calls}
    rows = wait(browser, "spans", lambda b: b.find_elements(By.CSS_SELECTOR, ".span-row"))
    assert any(row.text.startswith("voice.turn") for row in rows)
