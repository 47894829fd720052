"""`tuner export`: the JSON round-trips through the REST API, the C header compiles and looks up."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import BIG_PROBLEM, PROBLEM, fill, new_study, record
from tests.conftest import require
from tuner.api import Settings, create_app
from tuner.cli import main
from tuner.db import Store
from tuner.enums import Status
from tuner.export import FORMAT, ErrorBounds, c_string, identifier, write_exports
from tuner.service import Service


@pytest.fixture
def service(tmp_path: Path) -> Service:
    store = Store.open(f"sqlite:///{tmp_path / 'tuner.db'}")
    fill(store)
    # A config text that needs escaping in C, on a causal problem of its own.
    causal = {**PROBLEM, "causal": True}
    record(store, new_study(store, "odd", causal), 0, {"accum": 'fl"o\\at\n?é'}, Status.OK,
           5e-3, 1e-5, causal)
    return Service(store)


def exported(service: Service, tmp_path: Path) -> tuple[dict, Path]:
    json_path, header_path = tmp_path / "best.json", tmp_path / "best.h"
    write_exports(service, json_path, header_path)
    return json.loads(json_path.read_text()), header_path


def test_json_round_trips_through_the_rest_api(service: Service, tmp_path: Path) -> None:
    document, _ = exported(service, tmp_path)
    assert document["format"] == FORMAT
    assert {json.dumps(e["problem"], sort_keys=True) for e in document["entries"]} == {
        json.dumps(p, sort_keys=True) for p in (PROBLEM, BIG_PROBLEM, {**PROBLEM, "causal": True})}
    with TestClient(create_app(lambda: service, Settings())) as client:
        for entry in document["entries"]:
            shape = [("shape", f"{k}={str(v).lower()}") for k, v in entry["problem"].items()]
            answer = client.get("/api/v1/best", params=[("kernel", entry["kernel"]),
                                                        ("arch", entry["arch"]), *shape]).json()
            assert answer["exact"] and answer["config"] == entry["config"]
            assert answer["provenance"]["trial"] == entry["provenance"]["trial"]


def c_problem(problem: dict) -> str:
    return "{" + ", ".join(f".{k} = {int(v)}" for k, v in problem.items()) + "}"


def test_header_compiles_and_applies_the_nearest_rule(service: Service, tmp_path: Path) -> None:
    cc = shutil.which("cc")
    require(cc is not None, "no C compiler (cc) on PATH")
    document, header = exported(service, tmp_path)
    checks = []
    for i, entry in enumerate(document["entries"]):
        checks.append(f"""{{ tuner_attention_cpu_problem p = {c_problem(entry['problem'])};
            const tuner_attention_cpu_config *c = tuner_attention_cpu_lookup(&p, &d);
            if (!c || d != 0.0 || c->block_n != {entry['config']['block_n']}
                || strcmp(c->accum, {c_string(entry['config']['accum'])}) != 0) return {i + 1}; }}""")
    program = tmp_path / "main.c"
    program.write_text(f"""#include "best.h"
int main(void) {{
    double d;
    {' '.join(checks)}
    tuner_attention_cpu_problem near = {c_problem({**PROBLEM, 'S': 512})};
    const tuner_attention_cpu_config *c = tuner_attention_cpu_lookup(&near, &d);
    if (!c || d != 1.0 || strcmp(c->exp, "poly3") != 0) return 100;  /* from S=256 */
    tuner_attention_cpu_problem far = {c_problem({**PROBLEM, 'S': 1 << 16, 'causal': True})};
    if (!tuner_attention_cpu_lookup(&far, NULL)) return 101;  /* the causal entry, far away */
    tuner_attention_cpu_problem none = {c_problem({**PROBLEM, 'B': 0})};
    if (tuner_attention_cpu_lookup(&none, NULL)) return 102;  /* B=0 is not a size: no match */
    return 0;
}}
""")
    binary = tmp_path / "main"
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-o", str(binary), str(program), "-lm"],
                   check=True, cwd=tmp_path)
    assert subprocess.run([str(binary)]).returncode == 0


def test_identifiers_are_c_names() -> None:
    assert identifier("tuner", "my-kernel", "sm_90a") == "tuner_my_kernel_sm_90a"
    assert identifier("9lives") == "_9lives"


@pytest.mark.parametrize(("bounds", "small_trial"), [
    ([], 1),                                      # no bound: the fastest (poly3, error 1e-4)
    (["1e-5"], 0),                                # within 1e-5: the exact libm config
    (["1", "attention=1e-5"], 0),                 # the kernel's own bound over the default
    (["1e-5", "gemm=1"], 0),                      # another kernel's bound leaves this one alone
])
def test_export_keeps_each_kernels_error_bound(bounds, small_trial, service, tmp_path, capsys):
    json_path = tmp_path / "best.json"
    argv = ["export", "--db", service._store.url, "--json", str(json_path),
            "--header", str(tmp_path / "best.h")]
    assert main([*argv, *(f"--max-error={b}" for b in bounds)]) == 0
    entries = json.loads(json_path.read_text())["entries"]
    small = next(e for e in entries if e["provenance"]["study"] == "small")
    assert small["provenance"]["trial"] == small_trial
    limit = ErrorBounds.parse(bounds).of("attention")
    assert all(limit is None or e["rel_l2"] <= limit for e in entries)
    assert all(e["max_error"] == limit for e in entries)


@pytest.mark.parametrize("bound", ["abc", "-1", "=1e-3", "attention=", "nan"])
def test_a_malformed_bound_is_refused(bound, service, tmp_path, capsys):
    code = main(["export", "--db", service._store.url, "--json", str(tmp_path / "x.json"),
                 f"--max-error={bound}"])
    err = capsys.readouterr().err
    assert code == 2 and "--max-error" in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.json").exists()
