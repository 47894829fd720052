"""Bad input of every kind: a one-line message that says what to do, exit code 2, nothing written."""

from __future__ import annotations

import pytest

from tuner.arch import local_gpu_capability
from tuner.cli import main

BROKEN_TEMPLATES = {
    "syntax.py": "class Broken(:\n",
    "raises.py": "raise RuntimeError('boom at import')\n",
    "empty.py": "x = 1\n",
    "missing.py": ("from tuner.kernel_templates import KernelSpec\n"
                   "class Half(KernelSpec):\n    name = 'half'\n"),
    "exits.py": "import sys\nsys.exit(3)\n",  # used to end the tuner silently with status 3
}


def run_cli(args: list[str], tmp_path, capsys) -> tuple[int, str]:
    code = main([*args, "--db", f"sqlite:///{tmp_path / 'tuner.db'}"])
    err = capsys.readouterr().err
    assert not (tmp_path / "tuner.db").exists(), "a refused command must write nothing"
    return code, err


@pytest.mark.parametrize("args, says", [
    (["run", "--kernel", "nope"], "unknown kernel 'nope'"),
    (["run", "--arch", "sm_12"], "unknown arch 'sm_12'"),
    (["run", "--arch", "cpu", "--shape", "X=1"], "no problem parameter 'X'"),
    (["run", "--arch", "cpu", "--shape", "B"], "malformed --shape"),
    (["run", "--arch", "cpu", "--shape", "B=abc"], "B must be an integer"),
    (["run", "--arch", "cpu", "--shape", "S=0"], "S must be at least 1"),
    (["run", "--arch", "cpu", "--trials", "0"], "--trials must be at least 1"),
    (["run", "--arch", "cpu", "--sampler", "magic"], "invalid choice"),
    (["run", "--arch", "cpu", "--template", "/no/such/file.py"], "does not exist"),
    (["best", "--arch", "cpu", "--kernel", "nope"], "unknown kernel"),
    (["run", "--arch", "cpu", "--study", "x/front"], "study name 'x/front' is not allowed"),
    (["run", "--arch", "cpu", "--study", "a\x01b"], "is not allowed"),
    (["run", "--arch", "cpu", "--study", "s" * 501], "use 1-200 letters"),
    (["run", "--arch", "cpu", "--timeout", "-1"], "--timeout: must be a number of seconds above 0"),
    (["run", "--arch", "cpu", "--timeout", "nan"], "--timeout: must be a finite number"),
    (["run", "--arch", "cpu", "--trial-timeout", "-1"], "--trial-timeout: must be a number of seconds"),
    (["run", "--arch", "cpu", "--heartbeat", "0"], "--heartbeat: must be a number of seconds"),
    (["best", "--arch", "cpu", "--max-error", "-1"], "--max-error: must be a relative error of 0"),
    (["best", "--arch", "cpu", "--shape", "S=1" + "0" * 400], "S must be at most 9223372036854775807"),
    (["best", "--arch", "cpu", "--shape", "S=" + "9" * 5000], "not a 5000-digit number"),
])
def test_bad_arguments_exit_2_with_one_line(args, says, tmp_path, capsys):
    code, err = run_cli(args, tmp_path, capsys)
    assert code == 2
    assert says in err and err.count("\n") == 1, err


@pytest.mark.parametrize("name", sorted(BROKEN_TEMPLATES))
def test_malformed_templates_are_refused(name, tmp_path, capsys):
    path = tmp_path / name
    path.write_text(BROKEN_TEMPLATES[name])
    code, err = run_cli(["run", "--arch", "cpu", "--template", str(path)], tmp_path, capsys)
    assert code == 2 and str(path) in err and err.count("\n") == 1, err


def test_cuda_arch_without_a_gpu_is_refused(tmp_path, capsys):
    if local_gpu_capability() is not None:
        pytest.skip("this machine has a GPU")
    code, err = run_cli(["run", "--arch", "sm_90a"], tmp_path, capsys)
    assert code == 2 and "has none" in err and "--arch cpu" in err and "tuner check --arch sm_90a" in err


def test_a_broken_template_is_named_before_a_missing_gpu(tmp_path, capsys):
    path = tmp_path / "syntax.py"
    path.write_text(BROKEN_TEMPLATES["syntax.py"])
    code, err = run_cli(["run", "--arch", "sm_90a", "--template", str(path)], tmp_path, capsys)
    assert code == 2 and "syntax error at line 1" in err and err.count("\n") == 1, err


def test_unreachable_database_is_refused_quickly(capsys, ray_session):
    code = main(["run", "--arch", "cpu", "--db", "postgresql+psycopg://tuner:secret@127.0.0.1:1/x"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "secret" not in err and "127.0.0.1:1" in err


def test_queries_on_a_missing_database_do_not_create_it(tmp_path, capsys):
    code, err = run_cli(["studies"], tmp_path, capsys)
    assert code == 2 and err.startswith("tuner: error:")


RAISING_TEMPLATE = '''
from tuner.kernel_templates import KernelSpec, OutputSpec, Param, Source

class Raising(KernelSpec):
    name = "raising"
    params = (Param("x", (1, 2)),)

    def check(self, config, problem, device):
        return {CHECK}

    def render(self, config, problem):
        return {RENDER}

    def make_inputs(self, problem, rng): return {{}}
    def output_spec(self, problem): return OutputSpec((1,), "float32")
    def reference(self, inputs, problem): return None
    def flops(self, problem): return 1.0
    def bytes_moved(self, problem): return 1.0
'''


@pytest.mark.parametrize("check, render, says", [
    ("1 / 0", "Source('c', '', 'f')", "check() raised ZeroDivisionError"),
    ("None", "{}['missing']", "render() raised KeyError"),
])
def test_templates_whose_code_raises_are_refused_before_writing(check, render, says, tmp_path, capsys,
                                                                ray_session):
    path = tmp_path / "raising.py"
    path.write_text(RAISING_TEMPLATE.format(CHECK=check, RENDER=render))
    code, err = run_cli(["run", "--arch", "cpu", "--template", str(path)], tmp_path, capsys)
    assert code == 2 and says in err and err.count("\n") == 1, err


def test_gp_sampler_runs_or_says_it_needs_pytorch(tmp_path, capsys, ray_session):
    import importlib.util

    args = ["run", "--arch", "cpu", "--shape", "S=64", "--sampler", "gp", "--trials", "12", "--no-progress"]
    if importlib.util.find_spec("torch") is None:
        code, err = run_cli(args, tmp_path, capsys)
        assert code == 2 and "needs PyTorch" in err
    else:
        assert main([*args, "--db", f"sqlite:///{tmp_path / 'gp.db'}"]) == 0


def test_export_to_a_missing_folder_is_refused_and_writes_nothing(tmp_path, capsys):
    from tests.db_fixtures import measurement
    from tuner.db import Store

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    with Store.open(url) as store:
        study = store.ensure_study(name="s", kernel="attention", backend="cpu", template_path=None,
                                   problem={"S": 256}, arch="cpu", device_name="cpu",
                                   sampler="tpe", directions=["minimize", "minimize"])
        store.record_trial(study, 0, {"block_m": 16}, measurement(), None)
    header = tmp_path / "best.h"
    code = main(["export", "--json", "/missing/dir/x.json", "--header", str(header), "--db", url])
    err = capsys.readouterr().err
    assert code == 2 and "/missing/dir" in err and "create it" in err and err.count("\n") == 1, err
    assert not header.exists()
