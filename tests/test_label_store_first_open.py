"""Many processes opening brand-new label stores at once: every open succeeds and the schema is made once.

Each of 12 processes opens the same 40 fresh files in the same order, so every file sees a burst of
first opens (switching a new file to WAL is where SQLite refused some of them at once)."""
import multiprocessing as mp, sqlite3

from astra_wb.annotate import LabelStore

def _open_all(paths, barrier, out):
    errors = []
    barrier.wait(60)
    for p in paths:
        try:
            with LabelStore(p, busy_timeout_s=30): pass
        except Exception as e: errors.append(f"{type(e).__name__}: {e}")
    out.put(errors)

def test_concurrent_first_opens(tmp_path):
    ctx, n = mp.get_context("fork"), 12
    paths = [tmp_path / f"fresh-{i}.db" for i in range(40)]
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open_all, args=(paths, barrier, out)) for _ in range(n)]
    for p in procs: p.start()
    errors = [e for _ in procs for e in out.get(timeout=240)]
    for p in procs: p.join(30)
    assert errors == [], f"{len(errors)} of {n * len(paths)} opens failed, e.g. {errors[:2]}"
    for p in paths[:5]:
        with LabelStore(p) as s: assert s.check() == [] and s.stats()["trajectories"] == 0
        db = sqlite3.connect(p)
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'events'").fetchone()[0] == 1
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        db.close()
