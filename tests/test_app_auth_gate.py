"""With auth on, nothing derived from the workbench's data or configuration reaches a client that has not
logged in: not the page, not the endpoint schema, not folder names. Tested over HTTP against the real app
with no cookie, forged cookies, a Basic auth header and X-Forwarded-For; then every route of the app
in-process. A real login still works (form post, then the page and the API)."""
import urllib.error, urllib.parse, urllib.request

import pytest

from test_app import SECRET, build_workspace, launch_app, stop_app

AUTH = "ann:s3cret-pw,bob:other-pw"
# what must never reach a stranger: run / data folder names, endpoint names, the secret outside the roots
LEAKS = ("run-a", "linked-run", "synth-bench", "mindcube", "linked-data", "load_sample", "open_runs", "save_label", SECRET)

@pytest.fixture(scope="module")
def app(tmp_path_factory):
    ws = build_workspace(tmp_path_factory.mktemp("gate"))
    proc, url = launch_app(ws, ws["root"] / "app.log", extra_env={"ASTRA_WB_APP_AUTH": AUTH})
    try: yield dict(ws, url=url)
    finally: stop_app(proc)

def _get(url, headers=None, method="GET", data=None):
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=20) as r: return r.status, r.read().decode("utf-8", "replace"), r.headers
    except urllib.error.HTTPError as e: return e.code, e.read().decode("utf-8", "replace"), e.headers

ROUTES = ("", "?all_endpoints=true", "?view=api", "gradio_api/runs", "config", "gradio_api/info", "gradio_api/info?all_endpoints=true",
          "gradio_api/openapi.json", "gradio_api/queue/join", "gradio_api/heartbeat/x", "theme.css", "gradio_api/upload_progress",
          "user", "token", "app_id", "login_check", "logout", "gradio_api/startup-events", "monitoring", "favicon.ico",
          "gradio_api/mcp/schema", f"gradio_api/file={urllib.parse.quote(SECRET)}")
STRANGERS = {"no cookie": {}, "forged cookie": {"Cookie": "access-token=abc; access-token-unsecure=abc; access-token-x=1"},
             "basic auth": {"Authorization": "Basic YW5uOnMzY3JldC1wdw=="},     # ann:s3cret-pw, but not a session
             "x-forwarded-for": {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "Host": "localhost"}}

@pytest.mark.parametrize("who", list(STRANGERS))
def test_strangers_get_nothing(app, who):
    for route in ROUTES:
        for accept in ("text/html", "application/json"):
            status, body, _ = _get(app["url"] + route, {**STRANGERS[who], "Accept": accept})
            leaked = [s for s in LEAKS if s in body]
            assert not leaked, (who, route, status, leaked)
            assert status in (401, 403, 404, 405), (who, route, status, body[:200])

def test_login_then_the_app(app):
    status, body, _ = _get(app["url"] + "login", method="POST", data=b"username=ann&password=wrong")
    assert status >= 400 and not any(s in body for s in LEAKS)
    status, body, headers = _get(app["url"] + "login", method="POST", data=b"username=ann&password=s3cret-pw")
    assert status == 200
    cookies = "; ".join(c.split(";")[0] for c in headers.get_all("set-cookie"))
    status, body, _ = _get(app["url"] + "config", {"Cookie": cookies})
    assert status == 200 and "run-a" in body and "load_sample" in body      # the same requests, logged in, see the app
    from gradio_client import Client
    c = Client(app["url"], auth=("bob", "other-pw"), verbose=False)
    assert "Logged in as **bob**" in c.predict("mallory", api_name="/login")

def _all_routes(routes):
    for r in routes:
        inner = getattr(r, "original_router", None) or getattr(r, "routes", None)
        yield from (_all_routes(getattr(inner, "routes", inner)) if inner else [r])

def test_every_route_in_process(tmp_path):
    "Every route the Gradio app defines, behind the gate, refuses an unauthenticated client."
    import re
    from starlette.testclient import TestClient
    from gradio.routes import App
    from apps.app import create_app
    from astra_wb.settings import load_settings
    from astra_wb.serve import app_kwargs
    ws = build_workspace(tmp_path)
    s = load_settings(tmp_path / "none.ini", env={})
    s.data_root, s.runs_root, s.label_db = str(ws["data"]), str(ws["runs"]), str(ws["label_db"])
    demo = create_app(s); demo.auth = [("ann", "pw")]
    app = App.create_app(demo, app_kwargs=app_kwargs())
    app.startup_events_triggered = True        # as after launch (launch itself calls that route once)
    client, seen = TestClient(app), 0
    for route in _all_routes(app.routes):
        path = re.sub(r"\{[^}]+\}", "x", getattr(route, "path", ""))
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if path in ("/login", "/login/") and method == "POST": continue
            r = client.request(method, path or "/", headers={"accept": "text/html"})
            assert r.status_code == 401, (method, path, r.status_code)
            assert not [x for x in LEAKS if x in r.text], (method, path)
            seen += 1
    assert seen > 80
