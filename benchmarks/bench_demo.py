"""Time the main job, `astra-wb demo`, end to end (goal: under 60 s on 2 CPU cores).

Prints the seconds of each stage and each stage's cost relative to the Direct run measured in the
same process (the reference: one policy pass per question, no simulator), then the total against
the 60 s goal. It also prints the CPU seconds used (this process and its workers): on a machine
shared with other jobs the wall clock overstates the cost, and CPU / 2 cores is the floor.

    python benchmarks/bench_demo.py [--n 200] [--no-trajectories]
"""
import argparse, os, resource, tempfile, time

from astra_wb.demo import DemoConfig, run_demo


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--no-trajectories", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ru0 = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        res = run_demo(DemoConfig(out=os.path.join(tmp, "demo"), n=a.n, save_trajectories=not a.no_trajectories), verbose=False)
        wall = time.perf_counter() - t
        ru1 = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(ru0, ru1))
        size = sum(f.stat().st_size for f in res.report.parent.rglob("*") if f.is_file()) / 2**20
    s = res.seconds; ref = s["direct"]
    print(f"demo, n={a.n}, trajectories {'off' if a.no_trajectories else 'on'}, cores={os.cpu_count()}")
    print(f"{'stage':<22}{'seconds':>9}{'x direct':>10}")
    for k, v in s.items():
        if k != "total": print(f"{k:<22}{v:9.2f}{v / ref:10.2f}")
    print(f"{'total':<22}{wall:9.2f}{wall / ref:10.2f}")
    print(f"cpu seconds (all processes) {cpu:.1f}; cpu / cores {cpu / (os.cpu_count() or 1):.1f}; load average {os.getloadavg()[0]:.1f}")
    print(f"goal 60 s: wall {wall / 60:.2f} of the budget ({'met' if wall < 60 else 'NOT met'}); output {size:.1f} MiB")
    print(f"agentic accuracy {100 * res.runs['agentic'].metrics['accuracy']:.1f} %, direct {100 * res.runs['direct'].metrics['accuracy']:.1f} %")


if __name__ == "__main__":
    main()
