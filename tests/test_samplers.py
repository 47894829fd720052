"""One contract over every registered sampler, as Optuna's sampler tests do: what a sampler
declares it supports (constraints, no repeats, ordered parameters, two objectives) it does."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from tuner.errors import UsageError
from tuner.kernel_templates import Device, KernelSpec, OutputSpec, Param, Source
from tuner.kernel_templates.families import Families
from tuner.samplers import DEFAULT, REGISTRY, SamplerContext, make_sampler
from tuner.search_space import distributions, optuna_params, suggest

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Tiles(KernelSpec):
    """A constrained space with ordered and unordered parameters (never compiled here)."""

    name = "tiles"
    params = (Param("block", (1, 2, 4, 8, 16)), Param("tile", (16, 32, 64, 128)), Param("variant", ("a", "b", "c")),
              Param("fast", (False, True)))

    def check(self, config, problem, device):
        if config["block"] * config["tile"] > 512:
            return "too many threads"
        if config["variant"] == "c" and config["block"] == 16:
            return "variant c has no 16-wide blocks"
        return None

    def render(self, config, problem):
        return Source(language="c", code=str(config), entry="f")

    def make_inputs(self, problem, rng):
        return {}

    def output_spec(self, problem):
        return OutputSpec(shape=(0,), dtype="float32")

    def reference(self, inputs: Mapping[str, Any], problem):
        return None

    def flops(self, problem):
        return 0.0

    def bytes_moved(self, problem):
        return 0.0


SPEC = Tiles()
DEVICE = Device("cpu")
SPACE = distributions(SPEC)
GRID = [dict(block=b, tile=t, variant=v, fast=f) for b in (1, 2, 4, 8, 16) for t in (16, 32, 64, 128)
        for v in "abc" for f in (False, True)]
VALID = [c for c in GRID if SPEC.check(c, {}, DEVICE) is None]


def objectives(config) -> list[float]:
    latency = 1e-3 * (1 + abs(np.log2(config["block"]) - 2) + abs(np.log2(config["tile"]) - 5)
                      + 0.5 * (config["variant"] == "b")) * (0.8 if config["fast"] else 1.0)
    return [latency, 1e-4 if config["fast"] else 1e-7]


def usable(name: str) -> bool:
    needs = REGISTRY[name].needs
    return needs is None or importlib.util.find_spec(needs) is not None


SAMPLER_NAMES = [pytest.param(n, marks=pytest.mark.skipif(not usable(n), reason=f"needs {REGISTRY[n].needs}"))
                 for n in REGISTRY]


def new_study(name: str, seed: int = 0) -> optuna.Study:
    sampler = make_sampler(name, SamplerContext(SPEC, {}, DEVICE, seed))
    return optuna.create_study(sampler=sampler, directions=["minimize", "minimize"])


def finish(study: optuna.Study, trial: optuna.Trial) -> dict[str, Any]:
    """Tells as the study loop does: an invalid config fails, a valid one reports both objectives."""
    config = dict(trial.params)
    if SPEC.check(config, {}, DEVICE) is None:
        study.tell(trial, objectives(config))
    else:
        study.tell(trial, state=TrialState.FAIL)
    return config


def tune(study: optuna.Study, n: int) -> list[dict[str, Any]]:
    return [finish(study, study.ask(SPACE)) for _ in range(n)]


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_proposes_only_the_templates_choices(name):
    for config in tune(new_study(name), 25):
        assert all(config[p.name] in p.choices for p in SPEC.params), config


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_the_same_seed_proposes_the_same_configs(name):
    assert tune(new_study(name, seed=7), 15) == tune(new_study(name, seed=7), 15)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_failed_and_running_trials_do_not_stop_it(name):
    study = new_study(name)
    tune(study, 12)
    for _ in range(3):
        study.tell(study.ask(SPACE), state=TrialState.FAIL)
    running = [study.ask(SPACE) for _ in range(3)]  # in flight, never told
    assert len(tune(study, 5)) == 5 and all(t.params for t in running)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_an_enqueued_config_is_proposed_first(name):
    study = new_study(name)
    tune(study, 3)
    study.enqueue_trial(VALID[-1])
    assert dict(study.ask(SPACE).params) == VALID[-1]


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_two_objectives_give_a_front(name):
    assert REGISTRY[name].multi_objective
    study = new_study(name)
    tune(study, 30)
    front = {(t.params["fast"]) for t in study.best_trials}
    assert study.best_trials and front <= {False, True}


@pytest.mark.parametrize("name", [n for n in SAMPLER_NAMES if REGISTRY[n.values[0]].constraints])
def test_a_sampler_inside_the_constraints_never_proposes_an_invalid_config(name):
    assert all(SPEC.check(c, {}, DEVICE) is None for c in tune(new_study(name), 40))


@pytest.mark.parametrize("name", [n for n in SAMPLER_NAMES if REGISTRY[n.values[0]].no_repeats])
def test_no_config_is_proposed_twice_while_an_untried_one_is_left(name):
    study = new_study(name)
    pool = VALID if REGISTRY[name].constraints else GRID
    in_flight = [study.ask(SPACE) for _ in range(4)]  # asked, not yet told: not to be proposed again
    proposed = [tuple(finish(study, t).values()) for t in in_flight]
    proposed += [tuple(c.values()) for c in tune(study, len(pool) - 4)]
    assert len(set(proposed)) == len(pool)


@pytest.mark.parametrize("name", [n for n in SAMPLER_NAMES if REGISTRY[n.values[0]].ordered])
def test_an_ordered_sampler_walks_an_ordered_parameter_to_its_best(name):
    """One parameter of 64 ordered values, latency growing with the distance from 45: a sampler
    that sees the order finds 45 in far fewer trials than the 32 a blind one needs on average."""

    class Line(Tiles):
        params = (Param("x", tuple(range(1, 65))),)

        def check(self, config, problem, device):
            return None

    spec = Line()
    found = []
    for seed in range(5):
        study = optuna.create_study(sampler=make_sampler(name, SamplerContext(spec, {}, DEVICE, seed)),
                                    directions=["minimize", "minimize"])
        for n in range(1, 65):
            trial = study.ask(distributions(spec))
            study.tell(trial, [1.0 + abs(trial.params["x"] - 45), 0.0])
            if trial.params["x"] == 45:
                found.append(n)
                break
    assert len(found) == 5 and np.median(found) <= 20, found


def test_the_registry_refuses_an_unknown_sampler_with_the_choices():
    with pytest.raises(UsageError, match="choose one of forest, nsga2"):
        make_sampler("magic", SamplerContext(SPEC, {}, DEVICE))


def test_the_default_is_registered_and_samples_inside_the_constraints():
    info = REGISTRY[DEFAULT]
    assert info.constraints and info.no_repeats and info.ordered and info.multi_objective


@pytest.mark.skipif(not usable(DEFAULT), reason=f"needs {REGISTRY[DEFAULT].needs}")
def test_the_default_on_a_space_too_large_to_enumerate_samples_a_valid_pool():
    """A product of 10^6 configs is not walked: the default scores a seeded pool of valid configs
    drawn at random, and still proposes only valid configs, none twice, and never says exhausted."""
    from tuner.samplers.candidates import WALK_LIMIT, valid_configs

    class Wide(Tiles):
        params = tuple(Param(f"p{i}", tuple(2 ** k for k in range(10))) for i in range(6))

        def check(self, config, problem, device):
            return "too big" if config["p0"] * config["p1"] > 2 ** 12 else None

    spec = Wide()
    assert 10 ** 6 > WALK_LIMIT
    candidates = valid_configs(spec, {}, DEVICE, seed=3)
    assert not candidates.complete and len(candidates)
    sampler = make_sampler(DEFAULT, SamplerContext(spec, {}, DEVICE, 3))
    study = optuna.create_study(sampler=sampler, directions=["minimize", "minimize"])
    proposed = []
    for _ in range(40):
        trial = study.ask(distributions(spec))
        config = dict(trial.params)
        assert spec.check(config, {}, DEVICE) is None, config
        proposed.append(tuple(config.values()))
        study.tell(trial, [sum(np.log2(v) for v in config.values()) + 1.0, 0.0])
    assert len(set(proposed)) == 40 and not sampler.exhausted(study)


# ---- two families: ``family`` a parameter, each family's knobs conditional on it ----


class TilesA(Tiles):
    family = "a"


class TilesB(Tiles):
    """Another family with a knob of the same name and other choices, and a knob of its own."""

    family = "b"
    params = (Param("block", (32, 64)), Param("stages", (1, 2, 3)))

    def check(self, config, problem, device):
        return "one stage never overlaps" if config["stages"] == 1 and config["block"] == 64 else None


FAMILIES = Families([TilesA(), TilesB()])
FAMILY_VALID = ([{"family": "a", **c} for c in VALID]
                + [{"family": "b", "block": b, "stages": s} for b in (32, 64) for s in (1, 2, 3)
                   if FAMILIES.check({"family": "b", "block": b, "stages": s}, {}, DEVICE) is None])
FAMILY_SAMPLERS = [n for n in SAMPLER_NAMES if REGISTRY[n.values[0]].families]


def family_objectives(config) -> list[float]:
    if config["family"] == "a":
        return objectives(config)
    return [1e-3 * (1 + abs(config["stages"] - 2)) * config["block"] / 64, 1e-7]


def tune_families(study: optuna.Study, n: int) -> list[dict[str, Any]]:
    """As the study loop does: define-by-run, invalid configs failed, valid ones told."""
    configs = []
    for _ in range(n):
        trial = study.ask()
        config = suggest(trial, FAMILIES)
        if FAMILIES.check(config, {}, DEVICE) is None:
            study.tell(trial, family_objectives(config))
        else:
            study.tell(trial, state=TrialState.FAIL)
        configs.append(config)
    return configs


def new_family_study(name: str, seed: int = 0) -> optuna.Study:
    sampler = make_sampler(name, SamplerContext(FAMILIES, {}, DEVICE, seed))
    return optuna.create_study(sampler=sampler, directions=["minimize", "minimize"])


@pytest.mark.parametrize("name", FAMILY_SAMPLERS)
def test_over_two_families_each_config_is_one_familys_and_both_are_searched(name):
    configs = tune_families(new_family_study(name), 40)
    for config in configs:
        own = FAMILIES.members[config["family"]].params
        assert set(config) == {"family"} | {p.name for p in own}, config
        assert all(config[p.name] in p.choices for p in own), config
    assert {c["family"] for c in configs} == {"a", "b"}
    assert tune_families(new_family_study(name, seed=3), 15) == tune_families(new_family_study(name, seed=3), 15)


@pytest.mark.parametrize("name", [n for n in FAMILY_SAMPLERS if REGISTRY[n.values[0]].constraints])
def test_over_two_families_a_constrained_sampler_walks_every_valid_config_once(name):
    study = new_family_study(name)
    configs = tune_families(study, len(FAMILY_VALID))
    assert sorted(map(str, configs)) == sorted(map(str, FAMILY_VALID))
    assert study.sampler.exhausted(study)


@pytest.mark.parametrize("name", FAMILY_SAMPLERS)
def test_over_two_families_an_enqueued_config_is_proposed_first(name):
    study = new_family_study(name)
    tune_families(study, 3)
    wanted = {"family": "b", "block": 32, "stages": 3}
    study.enqueue_trial(optuna_params(FAMILIES, wanted))
    trial = study.ask()
    assert suggest(trial, FAMILIES) == wanted and trial.params == {"family": "b", "b.block": 32, "b.stages": 3}


def test_the_grid_sampler_walks_one_family_and_says_so():
    assert not REGISTRY["grid"].families
    with pytest.raises(UsageError, match="walks one family's grid.*2 here \\(a, b\\): pass --family"):
        make_sampler("grid", SamplerContext(FAMILIES, {}, DEVICE))
