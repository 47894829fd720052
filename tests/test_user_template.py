"""A user's template is first class when reading results: once a study of it is stored, it is
known by its name alone (`tuner best --kernel`, `tuner show` throughput, REST `/best` with a
partial shape, `tuner kernels`, `/api/v1/kernels`), from what the database stores: the template
file is gone by then, so nothing can import it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tuner.api import Settings, create_app
from tuner.cli import main
from tuner.db import Store
from tuner.service import Service

ROOT = Path(__file__).resolve().parent.parent
STUDY = "softmax-cpu-rows256-cols512"


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> str:
    """A study of the C example, tuned from a copy of its files that is then deleted."""
    folder = tmp_path_factory.mktemp("template")
    for name in ("softmax_spec.py", "softmax.c"):
        shutil.copy(ROOT / "examples" / name, folder / name)
    db = f"sqlite:///{folder / 'tuner.db'}"
    assert main(["run", "--arch", "cpu", "--template", str(folder / "softmax_spec.py"), "--shape",
                 "rows=256,cols=512", "--trials", "4", "--executor", "local", "--no-progress",
                 "--db", db]) == 0
    (folder / "softmax_spec.py").unlink()
    (folder / "softmax.c").unlink()
    return db


def test_best_by_kernel_name(tuned, capsys):
    capsys.readouterr()
    assert main(["best", "--kernel", "softmax", "--arch", "cpu", "--shape", "rows=256,cols=512",
                 "--db", tuned]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["kernel"] == "softmax" and answer["exact"] and answer["provenance"]["study"] == STUDY
    # a partial shape is completed with the template's stored defaults (rows=512: the nearest)
    assert main(["best", "--kernel", "softmax", "--arch", "cpu", "--shape", "cols=512", "--db", tuned]) == 0
    nearest = json.loads(capsys.readouterr().out)
    assert nearest["problem"] == {"rows": 512, "cols": 512} and nearest["distance"] == 1.0


def test_best_refuses_what_no_study_stored(tuned, capsys):
    assert main(["best", "--kernel", "softmax", "--arch", "cpu", "--shape", "depth=3", "--db", tuned]) == 2
    assert "no problem parameter 'depth'" in capsys.readouterr().err
    assert main(["best", "--kernel", "nope", "--arch", "cpu", "--db", tuned]) == 2
    err = capsys.readouterr().err
    assert "unknown kernel 'nope'" in err and "no study" in err and err.count("\n") == 1


def test_show_prints_the_throughput(tuned, capsys):
    capsys.readouterr()
    assert main(["show", STUDY, "--db", tuned]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "FLOP/s" in line]
    assert rows and all(" - " not in row.replace("│", " ") for row in rows)  # no "-" for a rate


def test_kernels_lists_the_stored_template(tuned, capsys):
    capsys.readouterr()
    assert main(["kernels", "--db", tuned]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "softmax (cpu: cpu) — row-wise softmax" in out and "unroll" in out and "[problem] cols" in out


def test_the_api_answers_by_name_with_a_partial_shape(tuned):
    with Store.open(tuned, create=False) as store:
        with TestClient(create_app(lambda: Service(store), Settings())) as client:
            answer = client.get("/api/v1/best", params={"kernel": "softmax", "arch": "cpu",
                                                        "shape": "cols=512"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["problem"] == {"rows": 512, "cols": 512}
            assert answer.json()["tuned_problem"] == {"rows": 256, "cols": 512}
            bad = client.get("/api/v1/best", params={"kernel": "softmax", "arch": "cpu", "shape": "cols=x"})
            assert bad.status_code == 422 and "cols must be an integer" in bad.json()["detail"]
            kernels = {(k["name"], k["backend"]): k for k in client.get("/api/v1/kernels").json()}
            assert kernels["softmax", "cpu"]["space_size"] == 12
            assert [p["name"] for p in kernels["softmax", "cpu"]["problem_params"]] == ["rows", "cols"]
