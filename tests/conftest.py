"""Shared test fixtures: one Ray per test session, a private compile cache, CI strictness."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.db_fixtures"]  # db_url, pg_url, store: real SQLite and PostgreSQL

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip with the reason on a user's machine that lacks something; fail in CI, which must have it."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Compiled kernels go to a cache of this test session, not the user's."""
    path = tmp_path_factory.mktemp("tuner-cache")
    previous = os.environ.get("TUNER_CACHE_DIR")
    os.environ["TUNER_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("TUNER_CACHE_DIR", None)
    else:
        os.environ["TUNER_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray started once for the whole test session (it takes seconds to start)."""
    import ray

    from tuner.workers.ray_executor import init_ray

    init_ray(None)
    yield
    ray.shutdown()


@pytest.fixture
def two_cpu_families(monkeypatch):
    """The built-ins plus a second family of the CPU attention kernel (kernel_templates/testing)."""
    from tuner.kernel_templates import builtin_specs, registry

    monkeypatch.setattr(registry, "BUILTIN_MODULES", registry.BUILTIN_MODULES + ("testing.second_family",))
    builtin_specs.cache_clear()
    yield
    builtin_specs.cache_clear()
