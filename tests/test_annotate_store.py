"""The label store's durability settings, transactions, conflicts across connections, bad input and CLI."""
import json, os, sqlite3, subprocess, sys, threading, time
from pathlib import Path

import pytest

from astra_wb.annotate import LabelConflict, LabelStore, cli_annotate
from astra_wb.labels import LABELS, LabelError, cohen_kappa, krippendorff_alpha, read_jsonl

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path):
    s = LabelStore(tmp_path / "labels.db")
    s.register([f"r/t{i}" for i in range(6)])
    yield s
    s.close()


def test_durability_pragmas(store):
    db = store._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2            # FULL
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_every_write_is_inside_begin_immediate(store):
    trace = []
    store._db.set_trace_callback(trace.append)
    store.configure(overlap_fraction=0.5)
    store.register(["r/extra"])
    item = store.next_item("ann")
    ev = store.save_label("ann", item.trajectory, "uninformative_action")
    store.save_label("ann", item.trajectory, "other", base_version=ev.version, note="edit")
    store.release("ann", "r/t5", skip=True)
    store.login("bob")
    store._db.set_trace_callback(None)
    writes, inside = 0, False
    for stmt in (s.strip().upper() for s in trace):
        if stmt.startswith("BEGIN"):
            assert stmt == "BEGIN IMMEDIATE" or not inside, stmt
            inside = stmt == "BEGIN IMMEDIATE"
        elif stmt in ("COMMIT", "ROLLBACK"): inside = False
        elif stmt.split()[0] in ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE"):
            assert inside, f"write outside BEGIN IMMEDIATE: {stmt}"
            writes += 1
    assert writes >= 8


def test_stale_edit_from_another_connection_is_a_conflict(tmp_path, store):
    other = LabelStore(store.path)                      # a second session (own connection)
    v1 = store.save_label("ann", "r/t0", "missing_evidence")
    v2 = other.save_label("ann", "r/t0", "simulator_overuse", base_version=v1.version, note="second tab")
    with pytest.raises(LabelConflict) as info:
        store.save_label("ann", "r/t0", "stopped_exploring", base_version=v1.version)
    assert info.value.current == v2 and info.value.base_version == 1
    with pytest.raises(LabelConflict):                  # a second "first label" is stale too
        other.save_label("ann", "r/t0", "stopped_exploring")
    assert [e.label for e in store.events()] == ["missing_evidence", "simulator_overuse"]
    assert store.current("ann", "r/t0") == v2


def test_writer_waits_for_the_lock_instead_of_failing(store):
    other = LabelStore(store.path)
    held = threading.Event()
    def hold():
        with other._write():
            held.set(); time.sleep(0.5)
    t = threading.Thread(target=hold); t.start(); held.wait()
    ev = store.save_label("ann", "r/t1", "missing_evidence")   # blocks until `hold` commits (busy_timeout)
    t.join()
    assert store.current("ann", "r/t1") == ev


def test_concurrent_sessions_are_not_served_the_same_item(store):
    stores = [LabelStore(store.path) for _ in range(6)]
    got, errors = {}, []
    def serve(i):
        try: got[i] = stores[i].next_item(f"a{i}").trajectory
        except Exception as e: errors.append(e)
    threads = [threading.Thread(target=serve, args=(i,)) for i in range(6)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors and sorted(got.values()) == [f"r/t{i}" for i in range(6)]
    assert store.next_item("late") is None


def test_overlap_serves_k_annotators_then_stops(tmp_path):
    s = LabelStore(tmp_path / "k.db")
    s.configure(overlap_fraction=1.0, overlap_k=3)
    s.register(["only"])
    for a in ("a", "b", "c"):
        item = s.next_item(a)
        assert item.trajectory == "only" and item.required == 3
        s.save_label(a, "only", "missing_evidence")
    assert s.next_item("d") is None
    assert s.agreement().n_items == 1 and s.agreement().alpha != s.agreement().alpha   # one value only: nan


def test_events_are_append_only_at_the_sql_level(store):
    store.save_label("ann", "r/t0", "missing_evidence")
    for stmt in ("UPDATE events SET note = 'x'", "DELETE FROM events"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store._db.execute(stmt)


def test_bad_files(tmp_path):
    with pytest.raises(LabelError, match="cannot open as a label store"):
        (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
        LabelStore(tmp_path / "junk.db")
    newer = tmp_path / "newer.db"
    LabelStore(newer)._db.execute("PRAGMA user_version = 99")
    with pytest.raises(LabelError, match="newer than this code"):
        s = LabelStore(newer); s.close()


GOOD_TRAJ = {"type": "trajectory", "id": "r/t0", "path": None, "run": "r", "n_turns": 2, "added": 1.0}
GOOD_EV = {"type": "event", "event_id": "e1", "annotator": "ann", "trajectory": "r/t0", "label": "missing_evidence",
           "subtags": [], "note": "", "turn": 1, "version": 1, "time": 2.0}


@pytest.mark.parametrize("row, field", [
    ('{"type": "event", ', "not valid JSON"),
    ('[1, 2]', "expected a JSON object"),
    (json.dumps({**GOOD_EV, "type": "labels"}), "field 'type'"),
    (json.dumps({**GOOD_EV, "label": "bad_label"}), "field 'label': unknown label 'bad_label'"),
    (json.dumps({**GOOD_EV, "subtags": ["over_trust"]}), "field 'subtags'"),
    (json.dumps({k: v for k, v in GOOD_EV.items() if k != "annotator"}), "field 'annotator': missing"),
    (json.dumps({**GOOD_EV, "extra": 1}), "field 'extra': unknown field"),
    (json.dumps({**GOOD_EV, "turn": "2"}), "field 'turn'"),
    (json.dumps({**GOOD_EV, "turn": 10**30}), "field 'turn'"),
    (json.dumps({**GOOD_EV, "version": 2**70}), "field 'version'"),
    (json.dumps({**GOOD_EV, "time": "yesterday"}), "field 'time'"),
    (json.dumps({**GOOD_EV, "version": True}), "field 'version'"),
    (json.dumps({**GOOD_TRAJ, "n_turns": -1}), "field 'n_turns'"),
    (json.dumps({**GOOD_EV, "label": "other", "note": " "}), "field 'note'"),
])
def test_malformed_rows_name_file_row_and_field(tmp_path, row, field):
    f = tmp_path / "in.jsonl"
    f.write_text(json.dumps(GOOD_TRAJ) + "\n\n" + row + "\n")
    with pytest.raises(LabelError) as info: read_jsonl(f)
    assert f"{f}:3" in str(info.value) and field in str(info.value)


def test_import_refuses_unknown_trajectory_and_conflicting_history(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_text(json.dumps(GOOD_EV) + "\n")
    s = LabelStore(tmp_path / "s.db")
    with pytest.raises(LabelError, match=r"in.jsonl:1: field 'trajectory': unknown trajectory"): s.import_jsonl(f)
    s.register(["r/t0"])
    s.save_label("ann", "r/t0", "other", note="local edit")        # the store already has ann's version 1
    with pytest.raises(LabelError, match=r"in.jsonl:1: field 'version'.*conflicting edits"): s.import_jsonl(f)
    f.write_text(json.dumps({**GOOD_EV, "event_id": s.events()[0].event_id}) + "\n")
    with pytest.raises(LabelError, match="field 'event_id'.*different content"): s.import_jsonl(f)
    assert len(s.events()) == 1


def test_register_run_and_load_with_the_protocol(tmp_path):
    protocol = pytest.importorskip("astra_wb.protocol")
    from PIL import Image
    sample = protocol.Sample(id="q1", question="Where is the sofa?", images=[Image.new("RGB", (8, 8), (200, 10, 10))],
                             options={"A": "left", "B": "right"}, answer="A", category="Positional Relationship (Cam.–Obj.)",
                             meta={"source": "synth"})
    text = "<think>It is on the left.</think><answer>A</answer>"
    traj = protocol.Trajectory(sample, "direct", turns=[protocol.Turn(text, protocol.Answer("A", "It is on the left."))],
                               final_answer="A")
    run = tmp_path / "runs" / "run-1"
    protocol.save_trajectory(traj, run / "trajectories" / "q1")
    s = LabelStore(tmp_path / "labels.db")
    assert s.register_run(run) == ["run-1/q1"]
    item = s.next_item("ann")
    assert item.n_turns == 1 and Path(item.path) == (run / "trajectories" / "q1").resolve()
    loaded = item.load()
    assert loaded.sample.id == "q1" and loaded.final_answer == "A"
    with pytest.raises(LabelError, match="field 'turn'"):
        s.save_label("ann", item.trajectory, "collapse_to_direct", turn=2)
    s.save_label("ann", item.trajectory, "collapse_to_direct", turn=1)


def test_cli_round_trip(tmp_path, store, capsys):
    store.save_label("ann", "r/t0", "observation_misused", subtags=["index_confusion"], note="image 4 read as 3", turn=2)
    store.save_label("bob", "r/t0", "observation_misused")
    db, out = str(store.path), str(tmp_path / "out.jsonl")
    assert cli_annotate(["export", "--db", db, out]) == 0
    assert cli_annotate(["import", "--db", str(tmp_path / "copy.db"), out]) == 0
    assert LabelStore(tmp_path / "copy.db").events() == store.events()
    capsys.readouterr()
    assert cli_annotate(["agreement", "--db", db, "--json"]) == 0
    agr = json.loads(capsys.readouterr().out)
    assert agr["n_items"] == 1 and agr["observed"] == 1.0 and agr["alpha"] is None   # one label in use: undefined
    assert cli_annotate(["stats", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == 2
    assert cli_annotate(["configure", "--db", db, "--overlap-fraction", "0.25", "--overlap-k", "3"]) == 0
    assert store.config.overlap_k == 3
    (tmp_path / "bad.jsonl").write_text('{"type": "event"}\n')
    assert cli_annotate(["import", "--db", db, str(tmp_path / "bad.jsonl")]) == 2
    assert "bad.jsonl:1: field 'event_id': missing" in capsys.readouterr().err


def test_cli_dispatch_through_astra_wb(tmp_path):
    run = tmp_path / "run-x"
    (run / "trajectories" / "a").mkdir(parents=True)
    (run / "trajectories" / "a" / "trajectory.json").write_text('{"turns": []}')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "astra_wb.cli", "annotate"]
    r = subprocess.run(cmd + ["register", "--db", str(tmp_path / "l.db"), str(run)], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "1 trajectories registered" in r.stdout, r.stderr
    r = subprocess.run(cmd + ["stats", "--db", str(tmp_path / "l.db")], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["trajectories"] == 1, r.stderr


def test_default_db_comes_from_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASTRA_WB_LABEL_DB", str(tmp_path / "from-env.db"))
    monkeypatch.chdir(tmp_path)
    assert cli_annotate(["stats"]) == 2                     # reading commands never create a store
    assert f"no label store at {tmp_path / 'from-env.db'}" in capsys.readouterr().err
    assert cli_annotate(["configure", "--lease-s", "60"]) == 0
    assert cli_annotate(["stats"]) == 0 and (tmp_path / "from-env.db").exists()


def test_non_utf8_row_is_named(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_bytes(json.dumps(GOOD_TRAJ).encode() + b"\n" + b'{"type": "event", "note": "\xff"}\n')
    with pytest.raises(LabelError, match=r"in.jsonl:2: not UTF-8"): read_jsonl(f)


def _fake_run(folder, n=2):
    for i in range(n):
        (folder / "trajectories" / f"q{i}").mkdir(parents=True)
        (folder / "trajectories" / f"q{i}" / "trajectory.json").write_text(json.dumps({"turns": [{}]}))
    return folder


def test_same_named_run_folders_do_not_take_over_labelled_ids(tmp_path, capsys):
    db = tmp_path / "labels.db"
    a, b = _fake_run(tmp_path / "demo1" / "agentic"), _fake_run(tmp_path / "demo2" / "agentic")
    assert cli_annotate(["register", "--db", str(db), str(a)]) == 0
    assert cli_annotate(["register", "--db", str(db), str(b)]) == 2
    assert "already registered from" in capsys.readouterr().err
    s = LabelStore(db)
    assert Path(s.trajectory_path("agentic/q0")) == (a / "trajectories" / "q0").resolve()
