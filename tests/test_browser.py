"""The app in a real headless browser (Debian chromium driven by Playwright), one app server for the module.

What a person in front of it sees: a mistake is a sentence on the page and the last good view stays; the
layout at 1024x768 keeps the image, the map and the controls in view; a stranger can play a whole game
without the ground truth showing before their answer; two annotators label 10 trajectories with the keyboard
and see their agreement. Screenshots of every tab at 1024x768 and 1920x1080 go to $ASTRA_WB_SCREENSHOTS when
set (the README's pictures come from there), else to the test's temp folder.
"""
import os, time
from pathlib import Path

import pytest

from test_app import _trajectories, build_workspace, launch_app, stop_app, write_run

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SMALL, LARGE = {"width": 1024, "height": 768}, {"width": 1920, "height": 1080}
pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

def _ten_trajectories():
    "10 trajectories (the three hand-built ones, renamed), for the annotators' loop."
    from dataclasses import replace
    base = _trajectories()
    return [replace(base[i % 3], sample=replace(base[i % 3].sample, id=f"t{i:02d}")) for i in range(10)]

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("playwright")
    ws = build_workspace(tmp_path_factory.mktemp("browser"))
    write_run(ws["runs"] / "ten", _ten_trajectories(), mode="agentic")
    proc, url = launch_app(ws, ws["root"] / "app.log")
    try: yield dict(ws, url=url, log=ws["root"] / "app.log")
    finally: stop_app(proc)

@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=60_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try: yield b
        finally: b.close()

@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = Path(os.environ.get("ASTRA_WB_SCREENSHOTS") or tmp_path_factory.mktemp("shots")); d.mkdir(parents=True, exist_ok=True)
    return d

def _page(browser, url, viewport=SMALL):
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_text("astra-wb · thinking with imagination").wait_for()
    return page

def _pick(page, label: str, option: str):
    "Choose `option` in the Gradio dropdown labelled `label`."
    box = page.get_by_label(label, exact=True)
    box.click(); box.fill(option)
    page.get_by_role("option", name=option, exact=True).click()

def _shot(page, path: Path):
    "Screenshot of the top of the page once every visible image has loaded (a chat image still loading would be blank)."
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_function("() => Array.from(document.querySelectorAll('img')).filter(i => i.offsetParent)"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    time.sleep(0.5)   # plotly draws after the data arrives
    page.screenshot(path=str(path))

def _in_view(page, selector: str, settle_s: float = 15.0):
    "The element's box lies inside the viewport (nothing below the fold or off to the side), once layout settles."
    vp, deadline = page.viewport_size, time.time() + settle_s
    while True:
        box = page.locator(selector).first.bounding_box()
        inside = box is not None and box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= vp["width"] + 1 \
            and box["y"] + box["height"] <= vp["height"] + 1
        if inside or time.time() > deadline: break
        page.wait_for_timeout(250)
    assert inside, (selector, box, vp, page.evaluate("window.scrollY"))

def _status(page, elem_id: str):
    return page.locator(f"#{elem_id}")

def _img_src(page) -> str:
    return page.locator("#awb-imagined img").get_attribute("src")

# ----------------------------------------------------------------------------- 1, 2: errors in words, last view kept
def test_simulator_mistakes_are_sentences_and_the_view_stays(server, browser):
    "Fails on the old app: the handlers ran unqueued, so a mistake reached the page as a bare 'Error' badge."
    from playwright.sync_api import expect
    page = _page(browser, server["url"])
    expect(page.locator("#btn-move_forward")).to_be_disabled()            # nothing to move yet: the controls are off
    page.get_by_role("button", name="Load", exact=True).click()
    status = _status(page, "awb-sim-status")
    expect(status).to_contain_text("Loaded synth-000000")
    expect(page.locator("#btn-move_forward")).to_be_enabled()
    page.locator("#btn-turn_left").click()
    expect(status).to_contain_text("Image 3: imagined from image 1 after turning 30 degrees to the left")
    src = _img_src(page)
    box = page.get_by_placeholder("or type: turn 60 degrees left")
    for text, words in [("turn around", "cannot read the instruction: expected one magnitude in 'turn around'"),
                        ("go left a bit", "cannot read the instruction: expected one magnitude in 'go left a bit'"),
                        ("Based on the viewpoint of image 9, move 1 meter up.", "reference image must be 1..3, got 9"),
                        ("Based on the viewpoint of image 1, move 9 meters forward.", "exceeds the bound of 5 meters")]:
        box.fill(text); box.press("Enter")
        expect(status).to_contain_text("⚠ " if "image 9" in text else words)
        expect(status).to_contain_text(words)
        assert _img_src(page) == src                                         # the last good view is kept
        expect(page.get_by_text("Error", exact=True)).to_have_count(0)       # no bare red badge
    # uploads: the simulators cannot work without poses, and the page says so at load
    page.get_by_label("upload").check()
    from PIL import Image
    up = server["root"] / "photo.png"; Image.new("RGB", (64, 48), (90, 120, 200)).save(up)
    page.locator("input[type=file]").set_input_files(str(up))
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Load", exact=True).click()
    expect(status).to_contain_text("need known camera poses")
    expect(page.locator("#btn-move_forward")).to_be_disabled()
    log = server["log"].read_text()
    assert "Traceback" not in log and "astra-wb app: sim_text: cannot read the instruction" in log   # one line each

# ----------------------------------------------------------------------------- 4, 10: layout at 1024x768, history, room
def test_projector_layout_history_and_room_warning(server, browser, shots):
    from playwright.sync_api import expect
    page = _page(browser, server["url"])
    page.get_by_role("button", name="Load", exact=True).click()
    status = _status(page, "awb-sim-status")
    expect(status).to_contain_text("Loaded")
    first = _img_src(page)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0")
    for sel in ("#awb-imagined img", "#awb-map", "#btn-move_forward", "#btn-pitch_down", "#awb-sim-status"):
        _in_view(page, sel)
    dist = page.locator("#awb-dist input[type=number]")
    dist.fill("5"); dist.press("Enter")
    for _ in range(3): page.locator("#btn-move_forward").click(); page.wait_for_timeout(300)
    expect(status).to_contain_text("outside the room")                    # driven through the wall: a warning
    assert _img_src(page) != first
    expect(page.locator(".gallery-item, button.thumbnail-item").first).to_be_visible()
    page.wait_for_function("() => { const c = document.querySelector('.caption-label'); return c && c.textContent.startsWith('5 ←'); }")
    _shot(page, shots / "simulator-1024x768.png")
    # Runs: a table of metrics, numbered from 1, a negative number goes to the first
    page.get_by_role("tab", name="Runs").click()
    _pick(page, "runs (first one is browsed)", "run-a")
    page.get_by_role("button", name="Open", exact=True).click()
    rs = _status(page, "awb-runs-status")
    expect(rs).to_contain_text("run-a: 1 / 3 (all)")
    expect(page.locator("table").first).to_contain_text("acc PR")          # the metrics as a table, not a JSON tree
    page.get_by_role("button", name="next ▶").click()
    expect(rs).to_contain_text("run-a: 2 / 3 (all)")
    num = page.get_by_label("trajectory #", exact=True)
    num.fill("-2"); num.press("Enter")
    expect(rs).to_contain_text("run-a: 1 / 3 (all)")
    _shot(page, shots / "runs-1024x768.png")
    for tab, sels in [("Agent", ("#awb-play", "#awb-chat")), ("Annotate", ("#awb-label", "#awb-save-next"))]:
        page.get_by_role("tab", name=tab).click()
        for sel in sels: _in_view(page, sel)
    page.close()

# ----------------------------------------------------------------------------- 3: a stranger's game
def test_human_game_from_one_click_to_the_answer(server, browser, shots):
    from playwright.sync_api import expect
    page = _page(browser, server["url"])
    page.get_by_role("tab", name="Agent").click()
    page.locator("#awb-play").click()                                     # one click to start
    status = _status(page, "awb-agent-status")
    expect(status).to_contain_text("Your turn")
    options = page.locator("#awb-options button:visible")
    expect(options.first).to_be_visible()
    n_opts = options.count()
    assert n_opts >= 2
    _in_view(page, "#awb-ans-0")
    page.get_by_label("from image", exact=True).fill("7")                 # a mistake: feedback in plain words
    page.locator("#awb-h-call").click()
    expect(status).to_contain_text("That turn did not count: reference_image 7")
    assert "ground truth" not in page.content() and "The answer was" not in page.content()
    expect(page.locator("#awb-chat")).not_to_contain_text("<think>")
    page.get_by_label("from image", exact=True).fill("1")
    page.locator("#awb-h-call").click()                                   # reasoning left empty: fine for a person
    expect(status).to_contain_text("imagined from image 1 after turning 45 degrees to the left")
    page.wait_for_function("() => document.querySelectorAll('#awb-chat img').length >= 3")
    last = page.locator("#awb-chat .message-row").last
    page.wait_for_timeout(800)
    assert last.bounding_box()["y"] < page.viewport_size["height"]        # the chat followed the new view
    assert "ground truth" not in page.content() and "The answer was" not in page.content()
    _shot(page, shots / "agent-1024x768.png")
    options.first.click()
    expect(status).to_contain_text("You answered A")
    expect(status).to_contain_text("The answer was")
    expect(page.locator("#awb-chat")).to_contain_text("ground truth")     # now, and only now
    expect(page.locator("#awb-human:visible")).to_have_count(0)           # the game is over: its controls go
    page.close()

# ----------------------------------------------------------------------------- 5, 6: two annotators, keyboard only
def _label_all(page, name: str, keys: list[str], overlap: bool = False, shot: Path | None = None):
    from playwright.sync_api import expect
    page.get_by_role("tab", name="Annotate").click()
    page.get_by_label("annotator", exact=True).fill(name)
    page.get_by_role("button", name="Log in").click()
    st = _status(page, "awb-ann-status")
    expect(st).to_contain_text(f"Logged in as {name}")
    if overlap:
        num = page.locator("#awb-overlap input[type=number]")
        num.fill("1"); num.press("Enter")
        _pick(page, "queue a run for labelling", "ten")
        page.get_by_role("button", name="Queue run").click()
        expect(st).to_contain_text("Queued 10 trajectories from ten. 100% of all trajectories go to 2 annotators.")
        page.get_by_role("button", name="Queue run").click()
        expect(st).to_contain_text("ten is already queued (10 trajectories); nothing added.")
    page.get_by_role("button", name="Next trajectory").click()
    expect(st).to_contain_text("0 of 10 done")
    saved = page.locator("#awb-saved")
    page.locator("#awb-save-next").click()                                # nothing chosen: plain words, nothing lost
    expect(saved).to_contain_text("⚠ not saved: choose a label first")
    for i, key in enumerate(keys):
        page.locator("body").press(key)
        if key == "4":                                                    # sub-tags appear only for a label with them
            expect(page.get_by_label("Over-trust of the generated view over reliable context")).to_be_visible()
            page.get_by_label("Over-trust of the generated view over reliable context").check()
            if shot: _shot(page, shot)
        page.locator("body").press("Enter")
        expect(st).to_contain_text(f"{i + 1} of 10 done")
    expect(st).to_contain_text("Nothing left to label for you")

def test_two_annotators_label_ten_with_the_keyboard(server, browser, shots):
    from playwright.sync_api import expect
    a = _page(browser, server["url"])
    a.get_by_role("tab", name="Annotate").click()
    expect(a.get_by_label("Imagination provided missing viewpoint evidence")).to_be_visible()
    expect(a.get_by_text("Over-trust of the generated view over reliable context")).to_be_hidden()
    a.get_by_label("Correct tool access but uninformative action").check()
    expect(a.locator("#awb-label-desc")).to_contain_text("could not resolve the question")   # the description beside it
    ann = ["1", "2", "1", "4", "1", "2", "3", "1", "2", "1"]
    _label_all(a, "ann", ann, overlap=True, shot=shots / "annotate-1024x768.png")
    b = _page(browser, server["url"])
    bob = ann[:7] + ["3", "2", "1"]                                       # bob differs on one trajectory
    _label_all(b, "bob", bob)
    b.get_by_role("button", name="Compute agreement").click()
    summary = b.locator("#awb-agreement textarea")
    b.wait_for_function("() => (document.querySelector('#awb-agreement textarea') || {}).value?.includes('items with >= 2 annotators: 10')")
    text = summary.input_value()
    assert "ann vs bob: n=10 observed=0.900" in text and "with sub-tags" in text, text
    b.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0")
    assert "missing_evidence" not in b.locator(".js-plotly-plot").last.inner_text()          # titles, not codes
    from astra_wb.annotate import LabelStore
    with LabelStore(server["label_db"]) as s:
        got = {(e.annotator, e.trajectory.split("/")[1]): e.label for e in s.labels() if e.trajectory.startswith("ten/")}
        assert len(got) == 20 and sum(v == "observation_misused" for v in got.values()) == 2
    a.close(); b.close()

# ----------------------------------------------------------------------------- screenshots at 1920x1080
def test_wide_screenshots(server, browser, shots):
    from playwright.sync_api import expect
    page = _page(browser, server["url"], LARGE)
    page.get_by_role("button", name="Load", exact=True).click()
    expect(_status(page, "awb-sim-status")).to_contain_text("Loaded")
    page.locator("#btn-turn_right").click()
    expect(_status(page, "awb-sim-status")).to_contain_text("Image 3")
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0")
    _shot(page, shots / "simulator-1920x1080.png")
    page.get_by_role("tab", name="Agent").click()
    page.get_by_role("button", name="Run", exact=True).click()
    expect(_status(page, "awb-agent-status")).to_contain_text("done:")
    _shot(page, shots / "agent-1920x1080.png")
    page.get_by_role("tab", name="Runs").click()
    _pick(page, "runs (first one is browsed)", "run-a")
    page.get_by_role("button", name="Open", exact=True).click()
    expect(_status(page, "awb-runs-status")).to_contain_text("run-a: 1 / 3")
    _shot(page, shots / "runs-1920x1080.png")
    page.get_by_role("tab", name="Annotate").click()
    page.get_by_label("annotator", exact=True).fill("carol")
    page.get_by_role("button", name="Log in").click()
    expect(_status(page, "awb-ann-status")).to_contain_text("Logged in as carol")
    _pick(page, "queue a run for labelling", "run-a")
    page.get_by_role("button", name="Queue run").click()
    expect(_status(page, "awb-ann-status")).to_contain_text("from run-a")
    page.get_by_role("button", name="Next trajectory").click()
    expect(_status(page, "awb-ann-status")).to_contain_text("Labelling")
    page.get_by_label("Imagination provided missing viewpoint evidence").check()
    _shot(page, shots / "annotate-1920x1080.png")
    page.close()
