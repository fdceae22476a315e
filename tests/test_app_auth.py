"""The app with auth and a small upload limit from the environment (settings overrides):
unauthenticated requests are refused, the logged-in user is the annotator, uploads over the limit
or that are not images are rejected, a small uploaded image works with an image-only simulator."""
import io, json, urllib.error, urllib.request

import numpy as np
import pytest
from PIL import Image

from test_app import build_workspace, launch_app, stop_app

@pytest.fixture(scope="module")
def app(tmp_path_factory):
    ws = build_workspace(tmp_path_factory.mktemp("auth"))
    env = {"ASTRA_WB_APP_AUTH": "ann:s3cret-pw,bob:other-pw", "ASTRA_WB_MAX_UPLOAD_MB": "1"}
    proc, url = launch_app(ws, ws["root"] / "app.log", extra_env=env)
    try: yield dict(ws, url=url)
    finally: stop_app(proc)

def test_requests_need_login(app):
    from gradio_client import Client
    for route in ("gradio_api/info", "config", "gradio_api/queue/join"):
        with pytest.raises(urllib.error.HTTPError) as e: urllib.request.urlopen(app["url"] + route, timeout=10)
        assert e.value.code in (401, 403, 405), (route, e.value.code)
    with pytest.raises(Exception): Client(app["url"], auth=("ann", "wrong"), verbose=False)

def test_logged_in_user_is_the_annotator(app):
    from gradio_client import Client
    c = Client(app["url"], auth=("bob", "other-pw"), verbose=False)
    status = c.predict("mallory", api_name="/login")                 # a typed name cannot impersonate
    assert "Logged in as **bob**" in status

def _png(size, noise=False) -> bytes:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (*size, 3), dtype=np.uint8) if noise else np.full((*size, 3), 120, np.uint8)
    buf = io.BytesIO(); Image.fromarray(a).save(buf, format="PNG"); return buf.getvalue()

def test_uploads_are_limited(app, tmp_path):
    from gradio_client import Client, handle_file
    c = Client(app["url"], auth=("ann", "s3cret-pw"), verbose=False)
    big = tmp_path / "big.png"; big.write_bytes(_png((900, 900), noise=True))   # ~2.4 MB > 1 MB
    assert big.stat().st_size > 2**20
    with pytest.raises(Exception): c.predict("upload", 0, "synth", "", 0, [handle_file(str(big))], api_name="/load_sample")
    fake = tmp_path / "notes.png"; fake.write_text("not an image")
    status = c.predict("upload", 0, "synth", "", 0, [handle_file(str(fake))], api_name="/load_sample")[-1]
    assert status.startswith("⚠") and "not a readable image" in status, status             # in words, in the status line
    ok = tmp_path / "ok.png"; ok.write_bytes(_png((64, 80)))
    view, ref, status = c.predict("upload", 0, "synth", "", 0, [handle_file(str(ok))], api_name="/load_sample")
    assert "upload" in status and "poses known" not in status
    history, fig = c.predict(api_name="/views")
    assert len(history) == 1 and fig is None
    status = c.predict(1, 1.0, 30, "oracle", api_name="/turn_left")[-1]   # the oracle needs a synthetic scene: a clear error
    assert status.startswith("⚠ SimulatorError"), status
