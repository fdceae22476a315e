"""Time the main job, `astra-wb demo`, end to end (goal: under 60 s on 2 CPU cores).

Prints the seconds of each stage and each stage's cost relative to the Direct run measured in the
same process (the reference: one policy pass per question, no simulator), then the total against
the 60 s goal.

    python benchmarks/bench_demo.py [--n 200] [--no-trajectories]
"""
import argparse, os, tempfile, time

from astra_wb.report import DemoConfig, run_demo


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--no-trajectories", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        res = run_demo(DemoConfig(out=os.path.join(tmp, "demo"), n=a.n, save_trajectories=not a.no_trajectories), verbose=False)
        wall = time.perf_counter() - t
    s = res.seconds; ref = s["direct"]
    print(f"demo, n={a.n}, trajectories {'off' if a.no_trajectories else 'on'}, cores={os.cpu_count()}")
    print(f"{'stage':<22}{'seconds':>9}{'x direct':>10}")
    for k, v in s.items():
        if k != "total": print(f"{k:<22}{v:9.2f}{v / ref:10.2f}")
    print(f"{'total':<22}{wall:9.2f}{wall / ref:10.2f}")
    print(f"goal 60 s: {wall / 60:.2f} of the budget ({'met' if wall < 60 else 'NOT met'})")
    print(f"agentic accuracy {100 * res.runs['agentic'].metrics['accuracy']:.1f} %, direct {100 * res.runs['direct'].metrics['accuracy']:.1f} %")


if __name__ == "__main__":
    main()
