"""The control panel in a real headless Chromium (Debian's ``chromium``, driven by Playwright):
a click on a fault button changes the machine's state on the page and the data on the broker."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from simulator.labels import read_labels
from tests.mosquitto_broker import Broker, Subscriber

from .running import SimulatorProcess

# Root in a container, and a machine whose network reaches only package registries: no
# sandbox, no background connections to Google (each would be refused, slowly).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: `apt-get install chromium` (.ci/run does)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_binary(), args=CHROMIUM_FLAGS
        )
        yield launched
        launched.close()


def fault_button(page: Page, machine: str, kind: str):  # type: ignore[no-untyped-def]
    return page.locator(f'button[data-machine="{machine}"][data-kind="{kind}"]')


def test_clicking_a_fault_button_breaks_the_machine_and_its_data(
    browser: Browser, broker: Broker, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.jsonl"
    subscriber = Subscriber(broker.port).start()
    process = SimulatorProcess(
        ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--machines", "2",
         "--rate", "5", "--labels", str(labels)]
    )  # fmt: skip
    page = browser.new_page()
    try:
        page.goto(process.panel)
        row = page.locator('tr[data-machine="machine1"]')
        expect(row.locator(".state")).to_have_text("normal")
        expect(page.locator("#status")).to_contain_text("connected")
        button = fault_button(page, "machine1", "bearing")
        expect(button).to_have_attribute("aria-pressed", "false")

        button.click()
        clicked = time.monotonic()
        expect(row.locator(".state")).to_have_text("faulty")
        expect(fault_button(page, "machine1", "bearing")).to_have_attribute("aria-pressed", "true")
        expect(page.locator('tr[data-machine="machine2"] .state')).to_have_text("normal")
        (label,) = read_labels(labels)
        assert (label.machine, label.kind, label.source) == ("machine1", "bearing", "api")

        messages = subscriber.wait_for(10, since=clicked, topic="machine/machine1")
        faulty = [m for m in messages if m.payload["time"] * 1_000_000 >= label.start_ns]
        assert faulty and all(m.payload["vibration"] > 94 for m in faulty)
        # The page shows the published values too.
        expect(row.locator(".vibration")).not_to_have_text("\u2013")
        shown = float(row.locator(".vibration").inner_text())
        assert shown > 94

        fault_button(page, "machine1", "bearing").click()
        expect(row.locator(".state")).to_have_text("normal")
        page.screenshot(path=str(tmp_path / "panel.png"))
    finally:
        page.close()
        assert process.stop() == 0
        subscriber.stop()
    (closed,) = read_labels(labels)
    assert closed.end_ns is not None
