"""Schema versions: create, reopen, refuse newer, upgrade old fixtures, downgrade, live with Optuna."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from tests.db_fixtures import measurement
from tuner.db import Store, StoreError
from tuner.db._models import Base
from tuner.db._schema import VERSION_TABLE, alembic_config, current_revision, include_name, scripts

FIXTURES = Path(__file__).parent / "fixtures"
HEAD = scripts().get_current_head()


def revision_of(url: str) -> str | None:
    engine = create_engine(url)
    with engine.connect() as connection:
        revision = current_revision(connection)
    engine.dispose()
    return revision


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    return names


def test_open_creates_the_schema_at_head_under_its_own_version_table(db_url):
    Store.open(db_url).close()
    assert revision_of(db_url) == HEAD
    names = table_names(db_url)
    assert VERSION_TABLE in names and "alembic_version" not in names
    assert {n for n in names if n != VERSION_TABLE} == set(Base.metadata.tables)


def test_reopening_keeps_the_data(db_url):
    with Store.open(db_url) as store:
        store.ensure_study(name="s", kernel="k", backend="cpu", template_path=None, problem={},
                           arch="cpu", device_name="cpu", sampler="tpe", directions=["minimize"])
    with Store.open(db_url, create=False) as store:
        assert [s.name for s in store.studies()] == ["s"]


def test_a_reader_refuses_a_database_without_tuner_tables(db_url):
    if db_url.startswith("sqlite"):
        create_engine(db_url).connect().close()  # an empty database file
    with pytest.raises(StoreError, match="no tuner tables"):
        Store.open(db_url, create=False)


def test_a_schema_newer_than_the_code_is_refused(db_url):
    Store.open(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'f00dcafe'"))
    engine.dispose()
    with pytest.raises(StoreError, match="'f00dcafe', newer than this tuner.*upgrade tuner"):
        Store.open(db_url)


def test_the_migrations_build_exactly_the_models(db_url):
    Store.open(db_url).close()
    engine = create_engine(db_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "include_name": include_name, "version_table": VERSION_TABLE})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_downgrade_to_nothing_and_upgrade_again(db_url):
    Store.open(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert not {n for n in table_names(db_url) if n.startswith("tuner_") and n != VERSION_TABLE}
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    engine.dispose()
    assert revision_of(db_url) == HEAD


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.sqlite")), ids=lambda p: p.stem)
def test_a_database_of_every_past_schema_upgrades_and_reads(fixture, tmp_path):
    copy = tmp_path / fixture.name
    shutil.copy(fixture, copy)
    url = f"sqlite:///{copy}"
    with Store.open(url, create=False) as store:
        study = store.study("fixture-study")
        assert study is not None and study.counts == {"ok": 2, "compile_error": 1}
        assert len(store.front(study.id)) == 1
    assert revision_of(url) == HEAD


def test_there_is_a_fixture_for_the_current_schema():
    assert (FIXTURES / f"{HEAD}.sqlite").is_file(), "run: python -m tests.db.make_fixture"


@pytest.mark.parametrize("optuna_first", [False, True], ids=["tuner-first", "optuna-first"])
def test_optuna_opens_studies_in_the_same_database(db_url, optuna_first):
    if optuna_first:
        optuna.create_study(storage=db_url, study_name="other")
    with Store.open(db_url) as store:
        study = optuna.create_study(storage=store.optuna_storage(), study_name="attn",
                                    directions=["minimize", "minimize"])
        choices = optuna.distributions.CategoricalDistribution([1, 2])
        study.add_trial(optuna.trial.create_trial(params={"x": 1}, distributions={"x": choices},
                                                  values=[1e-3, 1e-4]))
    loaded = optuna.load_study(study_name="attn", storage=db_url)
    assert [t.values for t in loaded.trials] == [[1e-3, 1e-4]]
    assert revision_of(db_url) == HEAD  # Optuna's own alembic_version left ours alone


@pytest.mark.parametrize("old", ["0001", "0002", "0003"])
def test_an_upgrade_keeps_the_studies_and_watches_every_write(old, tmp_path):
    copy = tmp_path / f"{old}.sqlite"
    shutil.copy(FIXTURES / f"{old}.sqlite", copy)
    url = f"sqlite:///{copy}"
    with Store.open(url, create=False) as store:
        study = store.study("fixture-study")
        assert study.template_digest is None  # not known before 0004
        before = store.change_marker()
        engine = create_engine(url)
        with engine.begin() as connection:  # a hand-written delete, not through the Store
            connection.execute(text("DELETE FROM tuner_trials WHERE number = 1"))
        engine.dispose()
        assert store.change_marker() != before
        assert store.study("fixture-study").counts == {"ok": 1, "compile_error": 1}


def test_downgrading_0004_keeps_every_trial(db_url):
    with Store.open(db_url) as store:
        study = store.ensure_study(name="s", kernel="k", backend="cpu", template_path=None,
                                   problem={}, arch="cpu", device_name="cpu", sampler="tpe",
                                   directions=["minimize"], space={"params": []})
        trial = store.record_trial(study, 0, {"x": 1}, measurement(), "/* x */")
        store.set_front(study.id, [trial.id])
    engine = create_engine(db_url)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0003")
    assert revision_of(db_url) == "0003" and "tuner_changes" not in table_names(db_url)
    with engine.begin() as connection:
        assert connection.scalar(text("SELECT count(*) FROM tuner_trials")) == 1
        assert connection.scalar(text("SELECT count(*) FROM tuner_front")) == 1
        connection.execute(text("DELETE FROM tuner_front"))  # no trigger is left to fire
    engine.dispose()
    with Store.open(db_url) as store:
        assert store.study("s").counts == {"ok": 1}
