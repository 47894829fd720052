"""docker/ with no Docker engine: what can be checked without building or running an image.

The compose file parses and names only images built here or official ones; the Dockerfiles copy
files that exist and install exactly pyproject's dependency set; health checks and GPU
reservations are where they must be; the scale-out doc's commands are the multi-node test's.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from ray.scripts.scripts import start as ray_start

from tests.test_cluster import DOC, ONE_MACHINE, doc_commands, expand, program
from tuner.api.routes_health import router as health_router
from tuner.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OFFICIAL_IMAGES = {"postgres"}  # Docker Hub's official images the compose file may pull


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines = [line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(word.upper(), rest.strip()) for word, _, rest in
            (line.strip().partition(" ") for line in joined.splitlines() if line.strip())]


def dockerfiles() -> dict[str, Path]:
    """The Dockerfile of every service that builds one, by service name."""
    return {name: ROOT / "docker" / Path(service["build"]["dockerfile"]).name
            for name, service in COMPOSE["services"].items() if "build" in service}


def pip_installs(dockerfile: Path) -> list[str]:
    """The arguments of every `pip install` in the Dockerfile's RUN lines, options dropped."""
    found = []
    for word, args in instructions(dockerfile):
        for command in re.split(r"&&|;", args) if word == "RUN" else []:
            words = shlex.split(command)
            if words[:2] == ["pip", "install"]:
                found += [w for w in words[2:] if not w.startswith("-")]
    return found


def pyproject_requirements() -> dict[str, Requirement]:
    project = PYPROJECT["project"]
    every = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {Requirement(r).name.lower(): Requirement(r) for r in every}


def test_every_service_uses_an_image_built_here_or_an_official_one():
    built = {service["image"] for service in COMPOSE["services"].values() if "build" in service}
    for name, service in COMPOSE["services"].items():
        image = service["image"]
        assert image in built or image.split(":")[0] in OFFICIAL_IMAGES, (name, image)
        if "build" in service:
            assert (DOCKER / service["build"]["context"]).resolve() == ROOT, name
            assert (ROOT / service["build"]["dockerfile"]).is_file(), name


def test_dockerfiles_copy_files_that_exist_and_every_package_of_the_project():
    packages = set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())
    for dockerfile in set(dockerfiles().values()):
        copied = [args.split()[:-1] for word, args in instructions(dockerfile) if word == "COPY"]
        sources = {source for group in copied for source in group}
        assert all((ROOT / source).exists() for source in sources), dockerfile
        assert packages | {"pyproject.toml", PYPROJECT["project"]["readme"]} <= sources, dockerfile


def test_dockerfiles_install_pyprojects_dependency_set_and_pin_nothing_else():
    known = pyproject_requirements()
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    for dockerfile in set(dockerfiles().values()):
        for target in pip_installs(dockerfile):
            if target.startswith("."):  # the project itself, with extras from pyproject
                wanted = set(re.findall(r"\w+", target.partition("[")[2]))
                assert wanted <= extras, (dockerfile.name, target)
                continue
            requirement = Requirement(target)
            assert requirement.name.lower() in known, f"{dockerfile.name} installs {target}, not in pyproject"
            assert requirement.specifier == known[requirement.name.lower()].specifier, (
                f"{dockerfile.name} pins {target}; pyproject says {known[requirement.name.lower()]}")


def test_gpu_image_has_the_cuda_extra_and_one_cuda_major_everywhere():
    gpu, api = DOCKER / "gpu.Dockerfile", DOCKER / "api.Dockerfile"
    assert any("cuda" in t for t in pip_installs(gpu)) and not any("cuda" in t for t in pip_installs(api))
    base = next(args for word, args in instructions(gpu) if word == "FROM")
    major = re.fullmatch(r"nvidia/cuda:(\d+)\.\d+\.\d+-devel-ubuntu\d+\.\d+", base).group(1)
    cupy = next(r for r in PYPROJECT["project"]["optional-dependencies"]["cuda"] if r.startswith("cupy"))
    assert Requirement(cupy).name == f"cupy-cuda{major}x"
    assert f"/whl/cu{major}0" in (DOCKER / "gpu.Dockerfile").read_text()  # torch's matching wheels


def test_health_checks_and_gpu_reservation():
    services = COMPOSE["services"]
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert services["ray-head"]["healthcheck"]["test"][1:3] == ["ray", "status"]
    api_check = next(args for word, args in instructions(DOCKER / "api.Dockerfile") if word == "HEALTHCHECK")
    assert "/healthz" in api_check and "/healthz" in {route.path for route in health_router.routes}
    device = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "pgdata" in COMPOSE["volumes"] and "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]


def test_api_image_serves_on_every_interface():
    command = next(args for word, args in instructions(DOCKER / "api.Dockerfile") if word == "CMD")
    argv = yaml.safe_load(command)  # exec form is a JSON list, which YAML reads too
    args = build_parser().parse_args(argv[1:])
    assert argv[0] == "tuner" and args.command == "serve" and args.host == "0.0.0.0"


def test_configuration_is_by_environment_variables(monkeypatch):
    env = COMPOSE["x-tuner-env"]
    assert {"TUNER_DB", "RAY_ADDRESS"} <= set(env)
    monkeypatch.setenv("TUNER_DB", "postgresql+psycopg://u@db/t")
    monkeypatch.setenv("RAY_ADDRESS", "ray-head:6379")
    args = build_parser().parse_args(["run"])
    assert (args.db, args.ray_address) == ("postgresql+psycopg://u@db/t", "ray-head:6379")


def test_secrets_come_from_the_env_file_and_it_lists_them_all():
    text = (DOCKER / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    example = {line.split("=")[0] for line in (DOCKER / "env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert used == example
    assert not re.search(r"PASSWORD: [^$]", text), "a password is written into compose.yaml"


def test_doc_commands_are_the_ones_the_multi_node_test_runs():
    docs = doc_commands()
    values = {"HEAD": "10.0.0.1", "PORT": "6379", "TUNER_DB": "postgresql+psycopg://u@db/t"}
    assert expand(docs.head, values)[:2] == ["ray", "start"] and "--head" in docs.head
    options = {option for param in ray_start.params for option in param.opts}
    for words in (docs.head, docs.worker):  # with the test's additions: all real `ray start` options
        assert {w.split("=")[0] for w in [*words[2:], *ONE_MACHINE] if w.startswith("--")} <= options
    args = build_parser().parse_args(expand(docs.study, values)[1:])
    assert (args.ray_address, args.db, args.devices) == ("10.0.0.1:6379", values["TUNER_DB"], 2)
    assert program(docs.study)[1:3] == ["-m", "tuner"]
    assert docs.env == {"RAY_AUTH_MODE": "token", "RAY_worker_niceness": "0"}


def test_readme_scale_out_section_is_the_doc():
    readme = (ROOT / "README.md").read_text()
    if "## Scale out" not in readme:
        pytest.skip("README.md has no Scale out section yet; the lead pastes docs/scale_out.md in")
    block = re.search(r"<!-- cluster-commands -->\n```sh\n.*?```", DOC.read_text(), re.DOTALL).group(0)
    assert block in readme, "README's scale-out commands differ from docs/scale_out.md"
