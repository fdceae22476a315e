"""The auth gate in a real headless browser: a stranger sees only the bare login form (no run or data
folder names), a wrong password is told so, the right one opens the workbench, and a motion works."""
from pathlib import Path

import pytest

from test_app import build_workspace, launch_app, stop_app
from test_app_auth_gate import LEAKS
from test_browser import ARGS, CHROMIUM

pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("playwright")
    ws = build_workspace(tmp_path_factory.mktemp("login"))
    proc, url = launch_app(ws, ws["root"] / "app.log", extra_env={"ASTRA_WB_APP_AUTH": "ann:s3cret-pw"})
    try: yield dict(ws, url=url)
    finally: stop_app(proc)

def test_login_form_then_the_workbench(server):
    from playwright.sync_api import expect, sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(60_000); expect.set_options(timeout=60_000)
            page.goto(server["url"])
            expect(page.get_by_role("button", name="Log in")).to_be_visible()
            html = page.content()
            assert not [s for s in LEAKS if s in html], "the login page carries workbench data"
            page.get_by_placeholder("username").fill("ann"); page.get_by_placeholder("password").fill("wrong")
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_text("Incorrect credentials.")).to_be_visible()
            page.get_by_placeholder("password").fill("s3cret-pw")
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_text("astra-wb · thinking with imagination")).to_be_visible()
            page.get_by_role("tab", name="Simulator").click()
            page.get_by_role("button", name="Load", exact=True).click()
            expect(page.get_by_text("Loaded synth-000000")).to_be_visible()
        finally: browser.close()
