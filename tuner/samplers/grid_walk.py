"""Optuna's grid sampler, made to work under ask-and-tell."""

from __future__ import annotations

import optuna


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` once the grid is walked, which works
    only inside ``study.optimize`` (under ask-and-tell it raises from ``tell``). The study loop
    ends the walk itself (``Proposer.exhausted``)."""

    def after_trial(self, study, trial, state, values) -> None:
        pass
