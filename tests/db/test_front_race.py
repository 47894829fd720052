"""The front is read and written in one transaction under the study's lock.

Forced interleaving: while one tuner decides, from the front it read, that its new trial joins
it, another tuner (its own Store, as another process has) stores a trial that dominates them
all and offers it. The first must not then write its decision over that one's front.
"""

from __future__ import annotations

import threading

import numpy as np

import tuner.db._store as store_module
from tests.db_fixtures import measurement
from tuner.db import Store
from tuner.pareto import evictions


def test_an_offer_racing_a_better_trial_leaves_the_true_front(db_url: str, monkeypatch) -> None:
    first, second = Store.open(db_url), Store.open(db_url)
    study = first.ensure_study(name="raced", kernel="attention", backend="cpu", template_path=None,
                               problem={"S": 256}, arch="cpu", device_name="cpu", sampler="tpe",
                               directions=["minimize", "minimize"])

    def stored(store: Store, number: int, latency: float, error: float):
        return store.record_trial(study, number, {"x": number}, measurement(
            median_s=latency, rel_l2=error, source_hash=f"{number:064}"), None)

    for number, point in enumerate([(2e-3, 1e-6), (1e-3, 1e-4)]):
        first.offer_to_front(study.id, stored(first, number, *point))

    def other_tuner() -> None:  # the best trial of all, offered by another process
        second.offer_to_front(study.id, stored(second, 2, 5e-4, 1e-7))

    racer = threading.Thread(target=other_tuner)

    def interleaved(point, front: np.ndarray):
        if racer.ident is None:  # the first tuner, between reading the front and writing it
            racer.start()
            racer.join(timeout=2)  # a correct store makes it wait for our write instead
        return evictions(point, front)

    third = stored(first, 3, 9e-4, 5e-5)  # joins the front it read; the racer's trial beats it
    monkeypatch.setattr(store_module, "evictions", interleaved)
    first.offer_to_front(study.id, third)
    racer.join()
    monkeypatch.undo()
    assert [t.number for t in first.front(study.id)] == [2], "a dominated front was left behind"
    first.close()
    second.close()
