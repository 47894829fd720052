"""Writes tests/db/fixtures/<head revision>.sqlite: a small database at the current schema.

Run it once whenever a new Alembic revision is added (``python -m tests.db.make_fixture``) and
commit the file, so every later schema is tested upgrading from this one.
"""

from __future__ import annotations

from pathlib import Path

from tests.db_fixtures import measurement
from tuner.db import Store
from tuner.db._schema import scripts
from tuner.enums import Status
from tuner.kernel_templates import find_spec

FIXTURES = Path(__file__).parent / "fixtures"


def write_fixture(path: Path) -> None:
    with Store.open(f"sqlite:///{path}") as store:
        study = store.ensure_study(name="fixture-study", kernel="attention", backend="cpu",
                                   template_path=None, problem={"S": 256, "causal": False},
                                   arch="cpu", device_name="cpu", sampler="tpe",
                                   directions=["minimize", "minimize"],
                                   space=find_spec("attention", "cpu").space())
        fast = store.record_trial(study, 0, {"block_m": 16}, measurement(median_s=1e-3), "/* a */")
        store.record_trial(study, 1, {"block_m": 32}, measurement(median_s=2e-3), "/* b */")
        store.record_trial(study, 2, {"block_m": 64}, measurement(
            status=Status.COMPILE_ERROR, median_s=None, rel_l2=None, reason="error: x"), "/* c */")
        store.set_front(study.id, [fast.id])


if __name__ == "__main__":
    target = FIXTURES / f"{scripts().get_current_head()}.sqlite"
    target.unlink(missing_ok=True)
    write_fixture(target)
    print(f"wrote {target}")
