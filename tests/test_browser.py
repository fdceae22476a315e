"""The app in a real headless browser (Debian chromium driven by Playwright): every tab, a motion that
changes the image, an agent run, a run opened, a label saved; screenshots of each tab.

Screenshots go to $ASTRA_WB_SCREENSHOTS when set, else to the test's temp folder.
"""
import os
from pathlib import Path

import pytest

from test_app import build_workspace, launch_app, stop_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("playwright")
    ws = build_workspace(tmp_path_factory.mktemp("browser"))
    proc, url = launch_app(ws, ws["root"] / "app.log")
    try: yield dict(ws, url=url)
    finally: stop_app(proc)

def _pick(page, label: str, option: str):
    "Choose `option` in the Gradio dropdown labelled `label`."
    box = page.get_by_label(label, exact=True)
    box.click(); box.fill(option)
    page.get_by_role("option", name=option, exact=True).click()

def _shot(page, path: Path):
    "Screenshot once every visible image has loaded (a chat image still loading would be a blank box)."
    page.wait_for_function("() => Array.from(document.querySelectorAll('img')).filter(i => i.offsetParent)"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(path), full_page=True)

def test_browser_tabs_motion_agent_runs_annotate(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    shots = Path(os.environ.get("ASTRA_WB_SCREENSHOTS") or tmp_path); shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(60_000); expect.set_options(timeout=60_000)
            page.goto(server["url"])
            expect(page.get_by_text("astra-wb · thinking with imagination")).to_be_visible()

            # Simulator: load a synthetic scene, move forward, the image changes
            page.get_by_role("tab", name="Simulator").click()
            page.get_by_role("button", name="Load", exact=True).click()
            expect(page.get_by_text("Loaded synth-000000")).to_be_visible()
            img = page.locator("#awb-imagined img")
            expect(img).to_have_count(1)
            src0 = img.get_attribute("src")
            before = page.request.get(src0).body()
            page.locator("#btn-move_forward").click()
            expect(page.get_by_text("Image 3: imagined from image 1 after moving 1 meter forward · oracle")).to_be_visible()
            page.wait_for_function("s => { const i = document.querySelector('#awb-imagined img'); return i && i.src !== s }", arg=src0)
            after = page.request.get(img.get_attribute("src")).body()
            assert len(before) > 1000 and len(after) > 1000 and before != after     # a different picture, not just a new URL
            # the chained update: camera 3 on the top-down map
            page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot .textpoint'))"
                                   ".some(t => t.textContent === '3')")
            _shot(page, shots / "1_simulator.png")

            # Agent: the expert policy with the oracle streams a trajectory into the chat
            page.get_by_role("tab", name="Agent").click()
            page.get_by_role("button", name="Run", exact=True).click()
            expect(page.get_by_text("done:", exact=False)).to_be_visible()
            expect(page.get_by_text("Answer:", exact=False).first).to_be_visible()
            _shot(page, shots / "2_agent.png")

            # Runs: open the run, browse to a wrong trajectory
            page.get_by_role("tab", name="Runs").click()
            _pick(page, "runs (first one is browsed)", "run-a")
            page.get_by_role("button", name="Open", exact=True).click()
            expect(page.get_by_text("run-a: 1 / 3 (all)", exact=False)).to_be_visible()
            page.get_by_role("button", name="next ▶").click()
            expect(page.get_by_text("run-a: 2 / 3 (all)", exact=False)).to_be_visible()
            _shot(page, shots / "3_runs.png")

            # Annotate: log in, queue the run, label the served trajectory; "saved" appears after the commit
            page.get_by_role("tab", name="Annotate").click()
            page.get_by_label("annotator", exact=True).fill("carol")
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_text("Logged in as carol")).to_be_visible()
            _pick(page, "queue a run for labelling", "run-a")
            page.get_by_role("button", name="Queue run").click()
            expect(page.get_by_text("Queued 3 trajectories from run-a.")).to_be_visible()
            page.get_by_role("button", name="Next trajectory").click()
            expect(page.get_by_text("Labelling run-a/", exact=False)).to_be_visible()
            page.get_by_label("Imagination provided missing viewpoint evidence").check()
            page.get_by_role("button", name="Save", exact=True).click()
            expect(page.locator("#awb-saved")).to_contain_text("✓ saved missing_evidence")
            _shot(page, shots / "4_annotate.png")
        finally:
            browser.close()
    from astra_wb.annotate import LabelStore
    with LabelStore(server["label_db"]) as s:
        assert [(e.annotator, e.label) for e in s.labels()] == [("carol", "missing_evidence")]
