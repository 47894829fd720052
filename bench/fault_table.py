"""Accounts for every trial of a planted-fault study: python bench/fault_table.py DB_URL STUDY.

Prints, per variant, how its trials ended, and Optuna's count of trials by state; checks that each
fault got its expected label and that every trial Optuna proposed ended (completed + failed +
pruned = proposed) and is stored once (none lost, none left running); exits 1 otherwise.
bench/reliability.py reads the same accounting (:func:`account`).
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field

import optuna

from tuner.db import Store, TrialRecord
from tuner.kernel_templates.testing import faulty_cpu, faulty_cuda
from tuner.service import Service

ENDED = ("COMPLETE", "FAIL", "PRUNED")


@dataclass
class Accounting:
    proposed: int  # trials Optuna holds for the study
    states: dict[str, int]  # Optuna's count by state: COMPLETE, FAIL, PRUNED, RUNNING, WAITING
    stored: int
    lost: int  # proposed, but no row of ours
    outcomes: dict[str, dict[str, int]]  # variant -> our status -> trials
    faults_injected: int
    mislabelled: int
    fault_reasons: dict[str, str] = field(default_factory=dict)  # "variant status" -> one stored reason
    rows: list[TrialRecord] = field(default_factory=list, repr=False)

    @property
    def accounted(self) -> int:
        """Trials that ended in one of Optuna's final states."""
        return sum(self.states.get(state, 0) for state in ENDED)

    @property
    def ok(self) -> bool:
        return self.accounted == self.proposed == self.stored and not (self.lost or self.mislabelled)


def account(url: str, study_name: str) -> Accounting:
    with Store.open(url, create=False) as store:
        service = Service(store)
        study = service.study(study_name)
        rows = service.trials(study_name, limit=10_000).items
    expected = (faulty_cpu if study.backend == "cpu" else faulty_cuda).FAULTY
    proposed = optuna.load_study(study_name=study_name, storage=url).trials
    outcomes: dict[str, Counter] = {}
    reasons: dict[str, str] = {}
    for row in rows:
        variant = row.config["variant"]
        outcomes.setdefault(variant, Counter())[row.status] += 1
        if variant in expected:
            reasons.setdefault(f"{variant} {row.status}", row.reason or "")
    return Accounting(
        proposed=len(proposed), states=dict(Counter(t.state.name for t in proposed)), stored=len(rows),
        lost=len({t.number for t in proposed} - {r.number for r in rows}),
        outcomes={v: dict(c) for v, c in sorted(outcomes.items())},
        faults_injected=sum(r.config["variant"] in expected for r in rows),
        mislabelled=sum(r.status != expected.get(r.config["variant"], "ok") for r in rows),
        fault_reasons=reasons, rows=rows)


def main(url: str, study_name: str) -> int:
    books = account(url, study_name)
    print(f"{'variant':<14} outcomes")
    for variant, outcomes in books.outcomes.items():
        print(f"{variant:<14} {outcomes}")
    for label, reason in books.fault_reasons.items():
        print(f"{label}: {reason}")
    print(f"proposed {books.proposed}, by state {books.states}, stored {books.stored}, "
          f"faults injected {books.faults_injected}, mislabelled {books.mislabelled}, lost {books.lost}")
    return 0 if books.ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
