"""Property tests: JSONL export/import is lossless, and the agreement statistics behave as statistics must."""
import math, random, tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from astra_wb.annotate import LabelStore
from astra_wb.labels import LABELS, cohen_kappa, krippendorff_alpha

CODES = sorted(LABELS)
names = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1, max_size=12)
# one operation: (annotator, trajectory, label, subtags, note, turn, is an edit)
ops = st.lists(st.tuples(st.sampled_from(["ann", "bob", "çé漢", "x y"]), st.integers(0, 4), st.sampled_from(CODES),
                         st.lists(st.sampled_from(LABELS["observation_misused"].subtags), max_size=3),
                         st.text(max_size=40), st.one_of(st.none(), st.integers(1, 9))),
               min_size=1, max_size=25)


def _apply(store, trajs, operations):
    "Save every operation as a first label or an edit of the current one (correct base version)."
    for a, t, label, subtags, note, turn in operations:
        if label == "other" and not note.strip(): note = "needs a note"
        if label != "observation_misused": subtags = []
        cur = store.current(a, trajs[t])
        store.save_label(a, trajs[t], label, base_version=cur.version if cur else 0, subtags=subtags, note=note, turn=turn)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traj_ids=st.lists(names, min_size=5, max_size=5, unique=True), operations=ops)
def test_export_import_round_trip_is_lossless(traj_ids, operations):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        src = LabelStore(d / "src.db")
        src.register([(t, None) for t in traj_ids], run="r")
        _apply(src, traj_ids, operations)
        src.export_jsonl(d / "a.jsonl")
        dst = LabelStore(d / "dst.db")
        report = dst.import_jsonl(d / "a.jsonl")
        assert report.get("events_added", 0) == len(operations)
        assert dst.events() == src.events()                  # every field of every event, in commit order
        assert dst.labels() == src.labels()
        assert dst.check() == []
        dst.export_jsonl(d / "b.jsonl")
        assert (d / "b.jsonl").read_bytes() == (d / "a.jsonl").read_bytes()
        assert dst.import_jsonl(d / "a.jsonl").get("events_added", 0) == 0   # idempotent
        a, b = src.agreement(), dst.agreement()
        assert a.to_dict() == b.to_dict()
        src.close(); dst.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=ops, split=st.integers(0, 25))
def test_merging_two_exports_of_disjoint_annotators(operations, split):
    "Two stores labelled offline by different annotators merge into one that holds both histories."
    trajs = [f"r/t{i}" for i in range(5)]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        left, right = LabelStore(d / "l.db"), LabelStore(d / "r.db")
        for s in (left, right): s.register(trajs)
        _apply(left, trajs, [o for o in operations[:split] if o[0] in ("ann", "bob")])
        _apply(right, trajs, [o for o in operations[split:] if o[0] not in ("ann", "bob")])
        left.export_jsonl(d / "l.jsonl"); right.export_jsonl(d / "r.jsonl")
        merged = LabelStore(d / "m.db")
        merged.import_jsonl(d / "l.jsonl"); merged.import_jsonl(d / "r.jsonl")
        assert sorted(merged.events(), key=lambda e: e.event_id) == sorted(left.events() + right.events(), key=lambda e: e.event_id)
        assert merged.check() == []


units = st.lists(st.lists(st.one_of(st.none(), st.sampled_from("abcd")), min_size=3, max_size=3), min_size=1, max_size=30)


@given(units)
def test_alpha_does_not_depend_on_label_names_or_coder_order(data_by_unit):
    data = [list(r) for r in zip(*data_by_unit)]              # coders x units
    alpha = krippendorff_alpha(data)
    rename = dict(zip("abcd", ["w", "x", "y", "z"]))
    renamed = [[None if v is None else rename[v] for v in row] for row in data]
    for other in (krippendorff_alpha(renamed), krippendorff_alpha(data[::-1])):
        assert (math.isnan(alpha) and math.isnan(other)) or math.isclose(alpha, other, abs_tol=1e-12)
    if not math.isnan(alpha): assert alpha <= 1 + 1e-12


@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from("abc")), min_size=1, max_size=40))
def test_kappa_is_symmetric_and_one_on_perfect_agreement(pairs):
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    k1, k2 = cohen_kappa(a, b), cohen_kappa(b, a)
    assert (math.isnan(k1) and math.isnan(k2)) or math.isclose(k1, k2, abs_tol=1e-12)
    kk = cohen_kappa(a, a)
    assert math.isnan(kk) or math.isclose(kk, 1.0)
    assert math.isnan(kk) == (len(set(a)) == 1)


def test_alpha_against_a_hand_computation():
    # 3 units, 2 coders: (a, a), (a, b), (b, b). Coincidences: o_aa = 2, o_ab = o_ba = 1, o_bb = 2;
    # n_a = n_b = 3, n = 6. alpha = 1 - (n - 1) * D_o / D_e = 1 - 5 * 2 / (36 - 18) = 1 - 10/18 = 0.4444
    assert math.isclose(krippendorff_alpha([["a", "a", "b"], ["a", "b", "b"]]), 1 - 10 / 18)
    # missing values drop a unit that has only one value: the same data plus a unit coded once
    assert math.isclose(krippendorff_alpha([["a", "a", "b", "c"], ["a", "b", "b", None]]), 1 - 10 / 18)
