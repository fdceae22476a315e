"""App latency of one camera motion at 512x512 with the oracle simulator.

Three measurements of the same motion, so the app's overhead is read against the library:
  reference  `OracleSimulator.imagine` called in-process (the simulator alone)
  handler    the Simulator tab's motion handler in-process (imagine + PNG written for the browser)
  views      the chained handler that follows it (history strip + top-down map figure)
  end-to-end `gradio_client` -> the app launched in a subprocess on 127.0.0.1 -> image file back
  floor      the same client calling the app's cheapest endpoint (list runs): Gradio's own round trip

Usage: python benchmarks/bench_app_latency.py [--n 40]
"""
import argparse, os, signal, socket, subprocess, sys, tempfile, time, urllib.error, urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

def stats(ms) -> str:
    ms = np.asarray(ms)
    return f"min {ms.min():6.1f}   p50 {np.percentile(ms, 50):7.1f}   p95 {np.percentile(ms, 95):7.1f} ms"

def timed(fn, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup): fn()
    out = []
    for _ in range(n):
        t = time.perf_counter(); fn(); out.append((time.perf_counter() - t) * 1000)
    return out

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="motions timed per measurement")
    a = ap.parse_args(argv)
    from apps.app import SIMULATORS, sim_load, sim_motion, sim_views, _simulator
    from astra_wb.cli import Settings
    from astra_wb.motion import Motion
    tmp = Path(tempfile.mkdtemp(prefix="awb-bench-"))
    settings = Settings(data_root=str(tmp / "data"), runs_root=str(tmp / "runs"), label_db=str(tmp / "labels.db"))
    st = sim_load(settings, "synthetic scene", 0, "synth", "", 0, None)[0]
    sample, sim = st["sample"], _simulator("oracle")
    motions = [Motion("yaw", 30), Motion("forward", 1.0), Motion("yaw", -30), Motion("forward", -1.0)]
    i = iter(range(10**9))
    ref = timed(lambda: sim.imagine(sample, [], 1, motions[next(i) % 4]), a.n)
    handler = timed(lambda: sim_motion("turn_right", SIMULATORS, st, 1, 1.0, 30, "oracle"), a.n)
    st2 = sim_motion("turn_right", SIMULATORS, st, 1, 1.0, 30, "oracle")[0]
    views = timed(lambda: sim_views(st2), a.n)

    port = free_port()
    env = {**os.environ, "ASTRA_WB_SETTINGS": str(tmp / "none.ini"), "GRADIO_TEMP_DIR": str(tmp / "gradio_tmp")}
    proc = subprocess.Popen([sys.executable, "-m", "apps.app", "--port", str(port), "--data-root", settings.data_root,
                             "--runs-root", settings.runs_root, "--label-db", settings.label_db], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(600):
            try: urllib.request.urlopen(url + "gradio_api/info", timeout=2); break
            except (urllib.error.URLError, ConnectionError): time.sleep(0.2)
        from gradio_client import Client
        c = Client(url, verbose=False, download_files=False)   # the browser fetches only the new image, so do we
        c.predict("synthetic scene", 0, "synth", "", 0, None, api_name="/load_sample")
        names = ["/turn_right", "/move_forward", "/turn_left", "/move_backward"]
        j = iter(range(10**9))
        def motion_to_image():
            view = c.predict(1, 1.0, 30, "oracle", api_name=names[next(j) % 4])[0]
            with urllib.request.urlopen(view["url"], timeout=30) as r: assert len(r.read()) > 1000
        def floor_call(): c.predict(api_name="/list_runs")
        for _ in range(3): motion_to_image(); floor_call()
        e2e, floor = [], []
        for _ in range(a.n):   # interleaved, so both see the same machine load
            for fn, out in ((motion_to_image, e2e), (floor_call, floor)):
                t = time.perf_counter(); fn(); out.append((time.perf_counter() - t) * 1000)
    finally:
        os.kill(proc.pid, signal.SIGTERM); proc.wait(20)
    r50 = np.percentile(ref, 50)
    print(f"oracle motion -> image at 512x512, n={a.n} each ({os.cpu_count()} CPUs)")
    print(f"  reference  (OracleSimulator.imagine)   {stats(ref)}")
    print(f"  handler    (sim_motion: imagine + PNG) {stats(handler)}   p50 x{np.percentile(handler, 50) / r50:.1f} of reference")
    print(f"  views      (sim_views: history + map)  {stats(views)}   (chained after the image)")
    print(f"  end-to-end (gradio_client round trip)  {stats(e2e)}   p50 x{np.percentile(e2e, 50) / r50:.1f} of reference")
    print(f"  floor      (no-op endpoint round trip) {stats(floor)}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"  end-to-end minus floor: min {min(e2e) - min(floor):.1f} ms, p50 {np.percentile(e2e, 50) - np.percentile(floor, 50):.1f} ms"
          f"   (1-min load average {load:.1f})")
    print(f"  goal: p95 < 100 ms end to end -> {'met' if np.percentile(e2e, 95) < 100 else 'NOT met'}")

if __name__ == "__main__": main()
