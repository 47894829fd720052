"""The best cache's freshness rules, on a clock the test moves."""

from __future__ import annotations

from tuner.api.best_cache import BestCache, CachedAnswer

ANSWER = CachedAnswer(200, b"{}")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(marker: list[int], clock: Clock) -> BestCache:
    return BestCache(marker=lambda: marker[0], recheck_s=1.0, clock=clock)


def test_entries_survive_until_the_marker_changes() -> None:
    marker, clock = [1], Clock()
    cache = make(marker, clock)
    assert cache.claim_refresh()
    cache.refresh()
    cache.put("k", ANSWER, cache.generation)
    clock.now = 5.0
    assert cache.claim_refresh()
    cache.refresh()
    assert cache.get("k") == ANSWER  # same marker: kept
    marker[0] = 2
    clock.now = 10.0
    assert cache.claim_refresh()
    cache.refresh()
    assert cache.get("k") is None


def test_one_caller_refreshes_per_interval() -> None:
    cache = make([1], Clock())
    assert cache.claim_refresh() and not cache.claim_refresh() and not cache.due()


def test_an_answer_computed_before_a_drop_is_not_kept() -> None:
    marker, clock = [1], Clock()
    cache = make(marker, clock)
    cache.refresh()
    generation = cache.generation  # a request starts computing here...
    marker[0] = 2
    cache.refresh()                # ...a trial is stored and another request drops the entries
    cache.put("k", ANSWER, generation)
    assert cache.get("k") is None


def test_size_is_bounded_oldest_first() -> None:
    cache = BestCache(marker=lambda: 1, recheck_s=1.0, max_entries=2)
    for key in "abc":
        cache.put(key, ANSWER, cache.generation)
    assert cache.get("a") is None and cache.get("c") == ANSWER
