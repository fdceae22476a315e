"""Label-store throughput: labels/s of `LabelStore.save_label` (WAL, synchronous=FULL, BEGIN IMMEDIATE,
version check, lease release) against a plain default-SQLite reference measured in the same run.

Reference: `sqlite3.connect(path)` with Python's defaults (rollback journal, default synchronous,
implicit deferred transactions, 5 s timeout) inserting the same event rows, one commit per label.
Also shown: raw WAL+FULL inserts (the durability settings without the store's logic) and the app's
full cycle (`next_item` + `save_label`). One commit per label everywhere: each label is acknowledged
only once it is on disk.

    python benchmarks/bench_label_store.py [--n 1000] [--writers 4] [--repeat 3] [--dir DIR]

Variants are interleaved and repeated; the row of each variant is its median-throughput repeat,
so a burst of load on a shared machine moves all variants alike.
"""
import argparse, json, multiprocessing as mp, os, shutil, sqlite3, statistics, sys, tempfile, time, uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from astra_wb.annotate import LabelStore  # noqa: E402

COLS = "event_id TEXT, annotator TEXT, trajectory TEXT, label TEXT, subtags TEXT, note TEXT, turn INTEGER, version INTEGER, time REAL"


def _row(a, i):
    return (uuid.uuid4().hex, a, f"run/t{i:06d}", "missing_evidence", "[]", "a short note", 1, 1, time.time())


def reference(db, a, n, lat):
    "Plain default SQLite: one INSERT + commit per label; a 'database is locked' label is lost (counted)."
    con, failed = sqlite3.connect(db), 0
    for i in range(n):
        t = time.perf_counter()
        try: con.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)", _row(a, i)); con.commit()
        except sqlite3.OperationalError:
            con.rollback(); failed += 1; continue
        lat.append(time.perf_counter() - t)
    return failed


def raw_wal(db, a, n, lat):
    "WAL + synchronous=FULL + BEGIN IMMEDIATE, plain INSERT."
    con = sqlite3.connect(db, timeout=30, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL"); con.execute("PRAGMA synchronous=FULL")
    for i in range(n):
        t = time.perf_counter()
        con.execute("BEGIN IMMEDIATE"); con.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)", _row(a, i)); con.execute("COMMIT")
        lat.append(time.perf_counter() - t)


def store_save(db, a, n, lat):
    "LabelStore.save_label on pre-registered trajectories (one per label)."
    s = LabelStore(db)
    for i in range(n):
        t = time.perf_counter()
        s.save_label(a, f"{a}/t{i:06d}", "missing_evidence", note="a short note", turn=1)
        lat.append(time.perf_counter() - t)


def store_cycle(db, a, n, lat):
    "The app's cycle: next_item, then save_label."
    s = LabelStore(db)
    for i in range(n):
        t = time.perf_counter()
        item = s.next_item(a)
        s.save_label(a, item.trajectory, "missing_evidence", note="a short note", turn=1)
        lat.append(time.perf_counter() - t)


def _prepare(kind, db, writers, n):
    if kind in ("reference", "raw_wal"):
        con = sqlite3.connect(db); con.execute(f"CREATE TABLE events({COLS})"); con.commit(); con.close()
    else:
        s = LabelStore(db)
        if kind == "store_save": s.register([f"w{w}/t{i:06d}" for w in range(writers) for i in range(n)])
        else: s.register([f"run/t{i:06d}" for i in range(writers * n)])
        s.close()


def _worker(kind, db, a, n, q):
    lat = []
    try: q.put((lat, globals()[kind](db, a, n, lat) or 0, None))
    except Exception as e: q.put((lat, n - len(lat), repr(e)))


def run(kind, root, writers, n, rep=0):
    db = str(root / f"{kind}-{writers}-{rep}.db")
    _prepare(kind, db, writers, n)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(kind, db, f"w{w}", n, q)) for w in range(writers)]
    t0 = time.perf_counter()
    for p in procs: p.start()
    results = [q.get(timeout=900) for _ in procs]
    for p in procs: p.join()
    wall = time.perf_counter() - t0
    if errors := [e for _, _, e in results if e]: raise SystemExit(f"{kind}: a writer failed: {errors[0]}")
    lats = sorted(x for lat, _, _ in results for x in lat)
    return dict(kind=kind, writers=writers, labels=len(lats), failed=sum(f for _, f, _ in results), labels_per_s=len(lats) / wall,
                p50_ms=1e3 * statistics.median(lats), p99_ms=1e3 * lats[int(0.99 * (len(lats) - 1))])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="labels per single writer (multi-writer: n / writers each)")
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--dir", default=None, help="where the databases go (a local disk: fsync is what is measured)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench_labels_", dir=a.dir))
    try:
        rows = []
        for writers, n in ((1, a.n), (a.writers, a.n // a.writers)):
            reps = {k: [] for k in ("reference", "raw_wal", "store_save", "store_cycle")}
            for r in range(a.repeat):
                for kind in reps: reps[kind].append(run(kind, root, writers, n, r))
            for kind, rs in reps.items():
                rows.append({**sorted(rs, key=lambda x: x["labels_per_s"])[len(rs) // 2],
                             "failed": sum(x["failed"] for x in rs), "repeats": len(rs)})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if a.json: print(json.dumps(rows, indent=1)); return
    print(f"median of {a.repeat} repeats; 'lost' sums all repeats; machine load {os.getloadavg()[0]:.1f}")
    print(f"{'variant':<14}{'writers':>8}{'labels':>8}{'lost':>6}{'labels/s':>10}{'vs ref':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for r in rows:
        ref = next(x for x in rows if x["kind"] == "reference" and x["writers"] == r["writers"])
        print(f"{r['kind']:<14}{r['writers']:>8}{r['labels']:>8}{r['failed']:>6}{r['labels_per_s']:>10.0f}{r['labels_per_s'] / ref['labels_per_s']:>7.2f}x"
              f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}")


if __name__ == "__main__":
    main()
