"""Bundles (`tuner export --bundle`): the format, the same answers as the database, bad bundles,
and a bundle running where there is no compiler and no database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.runtime.helpers import (
    FAST_CONFIG,
    SMALL,
    SOFTMAX,
    fill_attention,
    fill_softmax,
    qkv,
    reference,
    rel_l2,
    torch,
)
from tests.runtime.isolation import REFUSE_COMPILER_AND_DATABASE
from tuner import runtime as rt
from tuner.cli import main
from tuner.db import Store
from tuner.kernel_templates import find_spec
from tuner.runtime.bundle import FORMAT, MANIFEST

SOFTMAX_PROBLEM = {"rows": 8, "cols": 32}


@pytest.fixture
def database(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    with Store.open(url) as store:
        fill_attention(store)
        fill_softmax(store, SOFTMAX_PROBLEM)
    return url


def export(url: str, directory: Path, *extra: str) -> int:
    return main(["export", "--db", url, "--bundle", str(directory), *extra])


def test_a_bundle_holds_each_best_config_and_its_binary(database, tmp_path, capsys):
    assert export(database, tmp_path / "b") == 0
    assert "wrote a bundle of 2 best configs" in capsys.readouterr().out
    assert not (Path.cwd() / "tuner_best.json").exists()  # --bundle alone writes the bundle only
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text())
    assert manifest["format"] == FORMAT and manifest["arch"] == "cpu" and manifest["backend"] == "cpu"
    by_kernel = {e["kernel"]: e for e in manifest["entries"]}
    assert by_kernel["attention"]["config"] == FAST_CONFIG and by_kernel["attention"]["problem"] == SMALL
    assert by_kernel["softmax"]["template"] == SOFTMAX
    source = find_spec("attention", "cpu").render(FAST_CONFIG, SMALL)
    assert by_kernel["attention"]["binary"] == f"binaries/{source.code_digest()}.so"
    for entry in manifest["entries"]:
        assert (tmp_path / "b" / entry["binary"]).stat().st_size > 0


@pytest.mark.parametrize("problem, max_error", [
    (SMALL, None), (SMALL, 1e-3), ({**SMALL, "S": 128}, None), ({**SMALL, "B": 4, "D": 64}, None),
    ({**SMALL, "causal": False}, None), (SMALL, 1e-7),
])
def test_a_bundle_answers_as_the_database_does(database, tmp_path, problem, max_error):
    export(database, tmp_path / "b")
    from_db = rt.DatabaseAnswers(database)
    from_bundle = rt.BundleAnswers(tmp_path / "b")
    answers = []
    for source in (from_db, from_bundle):
        try:
            choice = source.choose("attention", "cpu", problem, max_error)
            answers.append((choice.config, choice.tuned_problem, choice.exact, choice.distance))
        except rt.NoAnswer:
            answers.append(None)
    assert answers[0] == answers[1]


def test_a_nearby_problem_with_other_code_has_no_bundled_binary(database, tmp_path):
    export(database, tmp_path / "b")
    rt.configure(bundle=tmp_path / "b")
    q, k, v = qkv({**SMALL, "D": 64})  # D is compiled into the kernel: another binary
    with pytest.warns(rt.FallbackWarning, match="has no binary of this config"):
        rt.attention(q, k, v, causal=True)


def test_a_bundle_for_another_arch_falls_back(database, tmp_path):
    export(database, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text())
    (tmp_path / "b" / MANIFEST).write_text(json.dumps({**manifest, "arch": "sm_90a", "backend": "cuda"}))
    rt.configure(bundle=tmp_path / "b")
    with pytest.warns(rt.FallbackWarning, match="is for sm_90a, not cpu"):
        rt.attention(*qkv(SMALL), causal=True)


@pytest.mark.parametrize("damage, message", [
    (None, "is not a bundle"),
    ("{", "cannot be read as JSON"),
    ('{"format": "other/1"}', "has format 'other/1'"),
    (json.dumps({"format": FORMAT, "arch": "cpu", "backend": "cpu", "entries": [{"kernel": "x"}]}),
     "has an entry without"),
])
def test_a_broken_bundle_is_refused_with_what_to_do(tmp_path, damage, message):
    (tmp_path / "b").mkdir()
    if damage is not None:
        (tmp_path / "b" / MANIFEST).write_text(damage)
    with pytest.raises(rt.BundleError, match=message):
        rt.configure(bundle=tmp_path / "b")


@pytest.mark.parametrize("args, message", [
    (["--arch", "sm_90a"], "nothing tuned for arch 'sm_90a'"),
])
def test_export_refuses_an_arch_it_has_nothing_for(database, tmp_path, capsys, args, message):
    assert export(database, tmp_path / "b", *args) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_arch_without_bundle_is_a_usage_error(database, capsys):
    assert main(["export", "--db", database, "--arch", "cpu"]) == 2
    assert "--arch chooses a bundle's arch" in capsys.readouterr().err


HIDDEN = REFUSE_COMPILER_AND_DATABASE + textwrap.dedent("""
    import torch
    import tuner.runtime as rt
    rt.configure(bundle=sys.argv[1])
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, int(sys.argv[2]), 32, generator=generator) for _ in range(3))
    out = rt.attention(q, k, v, causal=True)
    x = torch.randn(8, 32, generator=generator)
    y = rt.kernel(sys.argv[3])(x, rows=8, cols=32)
    torch.save({"q": q, "k": k, "v": v, "out": out, "x": x, "y": y}, sys.argv[4])
    print("decisions", [(d.kernel, d.choice.origin if d.choice else d.reason) for d in rt.decisions()])
    print("loaded", [m for m in ("optuna", "ray", "tuner.service") if m in sys.modules])
""")


def test_a_bundle_runs_with_no_compiler_and_no_database(tmp_path):
    """A real tuning run, its bundle, then a process with no compiler on PATH (cc and nvcc there
    fail loudly, and so does importing the compile path or the database), an empty compile
    cache and no database URL runs both kernels from it."""
    url = f"sqlite:///{tmp_path / 'tuned.db'}"
    shape = "B=1,H=2,S=64,D=32,causal=true"
    for target in (["--arch", "cpu", "--shape", shape], ["--template", SOFTMAX, "--shape", "rows=8,cols=32"]):
        assert main(["run", "--db", url, *target, "--executor", "local", "--trials", "3", "--seed", "3",
                     "--no-progress"]) == 0
    # The bound leaves the fast poly2 configs (about 1e-3 at S=64) out; a poly3 one may pass it at
    # S=64 and still cost 1e-3 at S=128 on other inputs (which one the short study stores depends on
    # its timings), so the output is checked below against the bound of the config the bundle holds.
    assert export(url, tmp_path / "bundle", "--max-error", "attention=1e-4") == 0
    manifest = json.loads((tmp_path / "bundle" / MANIFEST).read_text())
    chosen = next(e for e in manifest["entries"] if e["kernel"] == "attention")
    bound = find_spec("attention", "cpu").max_error(chosen["config"], chosen["problem"])
    os.unlink(tmp_path / "tuned.db")  # no database left on this machine either

    tools, touched = tmp_path / "tools", tmp_path / "compiler-was-run"
    tools.mkdir()
    for name in ("cc", "gcc", "nvcc"):
        (tools / name).write_text(f"#!/bin/sh\necho {name} >> {touched}\nexit 99\n")
        (tools / name).chmod(0o755)
    env = {"PATH": str(tools), "HOME": str(tmp_path), "CC": str(tools / "cc"),
           "TUNER_CACHE_DIR": str(tmp_path / "empty-cache")}
    result = subprocess.run([sys.executable, "-c", HIDDEN, str(tmp_path / "bundle"), "128", SOFTMAX,
                             str(tmp_path / "out.pt")], env=env, capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "loaded []" in result.stdout and result.stdout.count(f"bundle {tmp_path / 'bundle'}") == 2
    assert not touched.exists() and not (tmp_path / "empty-cache").exists()
    saved = torch.load(tmp_path / "out.pt")
    assert rel_l2(saved["out"], reference(saved["q"], saved["k"], saved["v"], True)) < bound
    assert torch.allclose(saved["y"], torch.softmax(saved["x"], dim=1), atol=1e-5)
