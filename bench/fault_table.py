"""Accounts for every trial of a planted-fault study: python bench/fault_table.py DB_URL STUDY.

Prints, per variant, how its trials ended, checks that each fault got its expected label and that
every trial Optuna proposed is stored once (none lost, none left running); exits 1 otherwise.
"""

from __future__ import annotations

import sys
from collections import Counter

import optuna
from optuna.trial import TrialState

from tuner.db import Store
from tuner.kernel_templates.testing import faulty_cpu, faulty_cuda
from tuner.service import Service


def main(url: str, study_name: str) -> int:
    with Store.open(url, create=False) as store:
        service = Service(store)
        study = service.study(study_name)
        rows = service.trials(study_name, limit=10_000).items
    expected = (faulty_cpu if study.backend == "cpu" else faulty_cuda).FAULTY
    proposed = optuna.load_study(study_name=study_name, storage=url).trials
    by_variant: dict[str, Counter] = {}
    mislabelled = 0
    for row in rows:
        variant = row.config["variant"]
        by_variant.setdefault(variant, Counter())[row.status] += 1
        mislabelled += row.status != expected.get(variant, "ok")
    print(f"{'variant':<14} outcomes")
    for variant, outcomes in sorted(by_variant.items()):
        print(f"{variant:<14} {dict(outcomes)}")
    running = sum(t.state == TrialState.RUNNING for t in proposed)
    lost = len({t.number for t in proposed} - {r.number for r in rows})
    faults = sum(n for v, c in by_variant.items() if v in expected for n in c.values())
    print(f"proposed {len(proposed)}, stored {len(rows)}, faults injected {faults}, "
          f"mislabelled {mislabelled}, lost {lost}, left running {running}")
    return int(bool(mislabelled or lost or running))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
