"""Training order: weighted mixing, alternating schedules, replay share."""

from collections import Counter

from rft.data.mixing import order_rows
from rft.recipe.schema import DataSection


def rows(name, n):
    return [{"id": f"{name}:{i}", "dataset": name} for i in range(n)]


DATA = {"det": rows("det", 10), "cls": rows("cls", 7), "gen": rows("gen", 5)}


def section(**kw):
    datasets = [{"name": "det", "kind": "coco", "path": "x", "weight": 3}, {"name": "cls", "kind": "image_folder", "path": "y"},
                {"name": "gen", "kind": "rows_jsonl", "path": "z"}]
    return DataSection(datasets=datasets, **kw)


def batches(order, size):
    return [order[i: i + size] for i in range(0, len(order), size)]


def test_alternating_schedule_is_exact():
    data = section(schedule=[{"dataset": "det", "batches": 8}, {"dataset": "cls", "batches": 1}])
    order = order_rows({k: v for k, v in DATA.items() if k != "gen"}, data, prompts_per_batch=4, n_batches=27, seed=0)
    sources = [{r["dataset"] for r in b} for b in batches(order, 4)]
    assert all(len(s) == 1 for s in sources)  # every batch comes from one dataset
    assert [s.pop() for s in sources] == (["det"] * 8 + ["cls"]) * 3


def test_weighted_mix():
    order = order_rows(DATA, section(), prompts_per_batch=8, n_batches=500, seed=1)
    share = Counter(r["dataset"] for r in order)
    assert abs(share["det"] / len(order) - 0.6) < 0.03 and abs(share["gen"] / len(order) - 0.2) < 0.03


def test_replay_share_is_exact_and_spread():
    data = section(schedule=[{"dataset": "det", "batches": 1}], replay={"dataset": "gen", "ratio": 0.25})
    order = order_rows(DATA, data, prompts_per_batch=4, n_batches=40, seed=0)
    assert Counter(r["dataset"] for r in order) == {"det": 120, "gen": 40}
    assert all(Counter(r["dataset"] for r in b)["gen"] == 1 for b in batches(order, 4))


def test_every_row_is_seen_before_any_repeats_and_order_is_seeded():
    data = section(schedule=[{"dataset": "det", "batches": 1}])
    order = order_rows(DATA, data, prompts_per_batch=5, n_batches=2, seed=3)
    assert sorted(r["id"] for r in order) == sorted(r["id"] for r in DATA["det"])
    assert order == order_rows(DATA, data, prompts_per_batch=5, n_batches=2, seed=3)
    assert order != order_rows(DATA, data, prompts_per_batch=5, n_batches=2, seed=4)
