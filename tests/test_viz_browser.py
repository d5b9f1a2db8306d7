"""The live view served by ``solara run`` and driven in a real headless browser
(Playwright with Debian's Chromium), at the size of a classroom projector
(1280×720). CI installs both; elsewhere the tests skip, saying why.

Covered: hovering a bank shows its id and balance sheet, clicking selects it;
a shock applied while the model plays is exactly the one the form shows; two
tabs have independent models and a closed tab stops stepping on the server;
the compare mode; and the timing figures (first render, Step -> re-rendered
page, Play speed), printed and written to ``artifacts/viz-timing.json``, not
asserted. Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("FINSIM_ARTIFACTS", ROOT / "artifacts"))
PROJECTOR = {"width": 1280, "height": 720}
STEP = re.compile(r"^step$", re.I)
PLAY = re.compile(r"^(▶|play)", re.I)  # "▶ Play" (and the "▶" of Mesa's own page)
PAUSE = re.compile(r"^(❚❚|pause)", re.I)
APPLIED = re.compile(r"Applied (default|loss)\b.*?bank (\d+)")

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's chromium is not installed (apt-get install chromium)"),
    pytest.mark.slow,  # a Solara server and a browser per module
]

LOG_CONFIG = {  # the server's log: finsim's own messages (a player stopping) at INFO
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
    "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "plain",
                         "stream": "ext://sys.stderr"}},
    "loggers": {"finsim_mesa": {"handlers": ["out"], "level": "INFO"},
                "solara": {"handlers": ["out"], "level": "ERROR"},
                "uvicorn": {"handlers": ["out"], "level": "ERROR"}},
}


@pytest.fixture(scope="module")
def server():
    """``solara run finsim_mesa.viz.app`` of this checkout on a free port:
    yields ``(url, log path)``."""
    pytest.importorskip("playwright", reason="playwright is not installed")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # one log per server: under xdist each worker that runs this module starts its
    # own server, and two servers writing one file overwrite each other's lines
    log = ARTIFACTS / f"solara-server-{port}.log"
    config = ARTIFACTS / f"solara-log-config-{port}.json"
    config.write_text(json.dumps(LOG_CONFIG))
    solara = Path(sys.executable).with_name("solara")
    env = os.environ | {"PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}  # this checkout's app
    with open(log, "w") as out:
        proc = subprocess.Popen([str(solara), "run", "finsim_mesa.viz.app", "--host",
                                 "127.0.0.1", "--port", str(port), "--production", "--no-open",
                                 "--log-config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"solara exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if urllib.request.urlopen(url, timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail(f"solara did not answer on {url}:\n{log.read_text()[-3000:]}")
        yield url, log
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


class Tab:
    """One browser tab on the page (its own browser context: another visitor)."""

    def __init__(self, browser, url: str, query: str = "", charts: bool = True) -> None:
        self.context = browser.new_context(viewport=PROJECTOR)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url + (f"?{query}" if query else ""))
        self.page.get_by_role("button", name=STEP).wait_for(timeout=90_000)
        self.page.get_by_text(re.compile(r"(Step|Time):\s*\d+")).first.wait_for(timeout=60_000)
        # a new tab starts a model of its own at step 0 (defect 4: it opened at the step
        # another visitor's model had reached)
        assert self.steps() == 0, f"a new tab opened at step {self.steps()}"
        self.first_render_s = None
        if charts:  # network, bank history and charts drawn with their first data
            self.first_render_s = self.page.wait_for_function(
                "() => document.querySelectorAll('.finsim-vega[data-stamp] svg').length >= 3"
                " && performance.now()", timeout=60_000).json_value() / 1000

    def step_text(self, n: int):
        return self.page.get_by_text(re.compile(rf"(Step|Time):\s*{n}\b")).first

    def steps(self) -> int:
        text = self.page.get_by_text(re.compile(r"(Step|Time):\s*\d+")).first.inner_text()
        return int(re.search(r"\d+", text).group())

    def button(self, name):
        return self.page.get_by_role("button", name=name)

    def pause(self) -> None:
        """Click Pause if the model is still playing. The run may end (the last
        step reached) between any check and the click: then the button is Play
        again and there is nothing to pause, which the step count confirms."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.button(PAUSE).click(timeout=3_000)
        except PlaywrightTimeout:
            assert self.button(PLAY).is_visible(), "neither Pause nor Play is shown"

    def bank(self, i: int):
        """Bank ``i``'s circle in the first network (banks are drawn in id order)."""
        net = self.page.locator('.finsim-vega[data-title="network 0"]')
        return net.locator("g.mark-symbol").first.locator("path").nth(i)

    def choose(self, label: re.Pattern, option: str) -> None:
        """Pick ``option`` in the select labelled ``label``."""
        field = self.page.locator(".v-input").filter(
            has=self.page.locator("label", has_text=label))
        field.locator(".v-select__slot").first.click()
        self.page.get_by_role("option", name=option, exact=True).last.click()

    def bank_input(self):
        return self.page.get_by_label(re.compile(r"^Bank \("))

    def expect_row(self, bank: int, item: str, value: str) -> None:
        """Wait until the inspector shows bank ``bank`` with ``value`` (a regular
        expression) in row ``item`` (the page's parts arrive as separate widget
        messages: a card's title can show before its table)."""
        from playwright.sync_api import expect

        name = self.page.locator("td:first-child", has_text=re.compile(rf"^{re.escape(item)}$"))
        row = self.page.locator(f"table.finsim-bank-{bank} tr").filter(has=name)
        expect(row.locator("td").nth(1)).to_have_text(re.compile(rf"^{value}$"),
                                                      timeout=10_000)

    def shoot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / name))

    def close(self) -> None:
        assert not self.errors, self.errors
        self.context.close()


def test_hover_shows_the_bank_and_a_click_selects_it(server, browser):
    url, _ = server
    tab = Tab(browser, url, "n_banks=100")
    assert "finsim-mesa" in tab.page.title()  # the tab has a name
    # on a 1280x720 projector the network and the shock control show together, unscrolled
    net = tab.page.locator('.finsim-vega[data-title="network 0"] svg').bounding_box()
    apply = tab.button(re.compile("apply shock", re.I)).bounding_box()
    for box in (net, apply):
        assert box["x"] >= 0 and box["y"] >= 0, box
        assert box["x"] + box["width"] <= 1280 and box["y"] + box["height"] <= 720, box
    tab.bank(7).hover()
    tip = tab.page.locator("#vg-tooltip-element")
    tip.wait_for(state="visible", timeout=10_000)
    text = tip.inner_text()
    assert re.search(r"bank\s+bank 7\b", text) and "total assets" in text
    assets = re.search(r"total assets\s+([\d,.]+)", text).group(1)
    tab.bank(7).click()
    tab.page.get_by_text("Bank 7", exact=True).wait_for(timeout=10_000)
    assert tab.bank_input().input_value() == "7"  # the shock control follows
    tab.expect_row(7, "total assets", re.escape(assets))  # same bank, same numbers
    # the blue ring drawn around the selected bank lets the pointer through to it
    tab.page.mouse.move(5, 700)
    tip.wait_for(state="hidden", timeout=10_000)
    tab.bank(7).hover()  # Playwright refuses if another mark would take the pointer
    tip.wait_for(state="visible", timeout=10_000)
    assert re.search(r"bank\s+bank 7\b", tip.inner_text())
    tab.page.mouse.move(5, 700)
    tab.shoot("viz-1280x720.png")
    tab.close()


def test_a_shock_while_playing_applies_what_the_form_shows(server, browser):
    """Defect 1: with Play running, a shock applied the previous choice."""
    url, _ = server
    tab = Tab(browser, url, "n_banks=100", charts=False)
    tab.button(PLAY).click()
    tab.page.wait_for_function(
        "() => /Step:\\s*([3-9]|\\d\\d)/.test(document.body.innerText)", timeout=30_000)
    last = ""
    for kind, bank in [("default", 3), ("loss", 5), ("default", 11), ("loss", 8)]:
        if not tab.button(PAUSE).is_visible():  # the 100 steps ran out
            tab.button(re.compile("^reset$", re.I)).click()
            tab.step_text(0).wait_for(timeout=30_000)
            tab.button(PLAY).click()
            # step 2 or later: the page need not show every step (a fast machine
            # may pass step 2 between two renders)
            tab.page.wait_for_function(
                "() => /Step:\\s*([2-9]|\\d\\d)/.test(document.body.innerText)",
                timeout=30_000)
        tab.choose(re.compile(r"^Shock( kind)?$"), kind)
        tab.bank_input().fill(str(bank))
        tab.button(re.compile("apply shock", re.I)).click()  # at once, while playing
        last = tab.page.wait_for_function(
            """prev => { const m = document.body.innerText.match(/Applied (default|loss)\\b.*/);
                        return m && m[0] !== prev && m[0]; }""", arg=last,
            timeout=30_000).json_value()
        got = APPLIED.search(last)
        assert got, repr(last)
        assert (got.group(1), int(got.group(2))) == (kind, bank), last
        assert tab.button(PAUSE).is_visible() or tab.steps() == 100  # it was playing
        if kind == "default":  # the inspector shows the bank, defaulted at the step named
            step = int(re.search(r"at step (\d+)", last).group(1))
            tab.page.get_by_text(f"Bank {bank}", exact=True).wait_for(timeout=10_000)
            tab.expect_row(bank, "state", f"defaulted at step {step}")
    tab.pause()
    tab.close()


def _server_says(log: Path, pattern: str, timeout: float, since: int = 0) -> str:
    """Wait until the server log says ``pattern`` after its first ``since``
    characters (what an earlier test or step logged does not count)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = re.search(pattern, log.read_text()[since:])
        if found:
            return found.group(0)
        time.sleep(0.25)
    raise AssertionError(f"the server log never said {pattern!r}:\n{log.read_text()[-2000:]}")


def test_two_tabs_have_their_own_models_and_a_closed_tab_stops(server, browser):
    """Defect 4: tabs shared one model, and a closed tab kept stepping."""
    url, log = server
    a = Tab(browser, url, charts=False)
    for n in (1, 2, 3):
        a.button(STEP).click()
        a.step_text(n).wait_for(timeout=30_000)
    b = Tab(browser, url, charts=False)  # opened after A stepped: at step 0 all the same
    a.button(STEP).click()
    a.step_text(4).wait_for(timeout=30_000)
    b.page.wait_for_timeout(300)
    assert b.steps() == 0  # A's step did not move B
    b.choose(re.compile(r"^Shock( kind)?$"), "default")
    b.bank_input().fill("2")
    b.button(re.compile("apply shock", re.I)).click()
    b.page.get_by_text(APPLIED).last.wait_for(timeout=30_000)
    b.page.get_by_text("Bank 2", exact=True).wait_for()
    b.expect_row(2, "state", r"defaulted at step \d+")
    a.bank(2).click()
    a.page.get_by_text("Bank 2", exact=True).wait_for(timeout=10_000)
    a.expect_row(2, "state", "active")  # A's bank 2 is not B's
    text = log.read_text()
    before, since = text.count("playing stopped"), len(text)
    a.button(PLAY).click()
    a.page.wait_for_function("() => /Step:\\s*([6-9]|\\d\\d)/.test(document.body.innerText)",
                             timeout=30_000)
    a.page.close()  # no goodbye: only the connection goes
    said = _server_says(log, r"playing stopped after \d+ steps at step \d+: the page is gone",
                        timeout=20, since=since)
    assert log.read_text().count("playing stopped") == before + 1, said
    b.button(STEP).click()
    b.step_text(1).wait_for(timeout=30_000)  # B is still served
    b.close()


def test_compare_mode_steps_two_models_together(server, browser):
    url, _ = server
    tab = Tab(browser, url, "scenario=systemic&compare=fire+sales+on+/+off")
    tab.page.get_by_text(re.compile("comparing fire sales on vs fire sales off")).wait_for()
    nets = tab.page.locator('.finsim-vega[data-title^="network"]')
    assert nets.count() == 2
    for n in range(1, 17):
        tab.button(STEP).click()
        tab.step_text(n).wait_for(timeout=30_000)
    # both networks draw the same frame (stamp "frame-selected bank"), the 17th or later
    stamps = tab.page.wait_for_function(
        """() => { const s = [...document.querySelectorAll('.finsim-vega[data-title^="network"]')]
                              .map(e => e.dataset.stamp);
                   return s.length === 2 && s[0] === s[1] && parseInt(s[0]) >= 17 && s; }""",
        timeout=10_000).json_value()
    assert stamps[0] == stamps[1]
    tab.shoot("viz-compare-1280x720.png")
    tab.close()


STEP_JS = """async (n) => {
  const button = [...document.querySelectorAll('button')]
      .find(b => b.textContent.trim().toLowerCase() === 'step');
  const charts = () => [...document.querySelectorAll('.finsim-vega')];
  const stamp = e => parseInt((e.dataset.stamp || '0').split('-')[0]);
  const times = [];
  for (let i = 0; i < n; i++) {
    const before = Math.max(...charts().map(stamp));
    const t0 = performance.now();
    button.click();
    await new Promise(resolve => { const check = () => charts().every(e => stamp(e) > before)
        ? requestAnimationFrame(resolve) : requestAnimationFrame(check); check(); });
    times.push(performance.now() - t0);
    await new Promise(r => setTimeout(r, 200));
  }
  return times;
}"""

PLAY_JS = """async (seconds) => {
  const net = document.querySelector('.finsim-vega[data-title="network 0"]');
  const step = () => parseInt(document.body.innerText.match(/Step:\\s*(\\d+)/)[1]);
  let drawn = 0, last = net.dataset.stamp;
  const seen = new MutationObserver(() => {
      if (net.dataset.stamp !== last) { drawn++; last = net.dataset.stamp; } });
  seen.observe(net, {attributes: true, attributeFilter: ['data-stamp']});
  const s0 = step(), t0 = performance.now();
  await new Promise(r => setTimeout(r, seconds * 1000));
  seen.disconnect();
  const dt = (performance.now() - t0) / 1000;
  return {steps_per_s: (step() - s0) / dt, drawn_per_s: drawn / dt};
}"""


def test_timing_at_100_banks(server, browser):
    """The issue's targets (first render <= 4 s, Step -> page <= 0.3 s, Play >= 5
    steps/s at 100 banks), measured here and printed; never asserted."""
    url, _ = server
    first = []
    for _ in range(3):
        tab = Tab(browser, url, "n_banks=100")
        first.append(tab.first_render_s)
        tab.close()
    tab = Tab(browser, url, "n_banks=100&scenario=systemic")
    tab.page.wait_for_timeout(500)
    step_ms = tab.page.evaluate(STEP_JS, 10)
    tab.button(PLAY).click()
    play = tab.page.evaluate(PLAY_JS, 6)
    tab.pause()
    tab.close()
    figures = {
        "first_render_s_median": round(statistics.median(first), 2),
        "first_render_s": [round(x, 2) for x in first],
        "step_to_page_s_median": round(statistics.median(step_ms) / 1000, 3),
        "step_to_page_s": [round(x / 1000, 3) for x in step_ms],
        "play_steps_per_s": round(play["steps_per_s"], 2),
        "play_drawn_per_s": round(play["drawn_per_s"], 2),
        "load_average": os.getloadavg(),
        "banks": 100,
    }
    (ARTIFACTS / "viz-timing.json").write_text(json.dumps(figures, indent=1))
    print("\nlive view at 100 banks (targets: first render <= 4 s, Step -> page <= 0.3 s, "
          "Play >= 5 steps/s):")
    for key, value in figures.items():
        print(f"  {key}: {value}")
    assert step_ms and first  # measured (the figures themselves are not asserted)
