"""The one mapping between a trial's three shapes: the worker's :class:`Measurement`, the
``tuner_trials`` row, and the :class:`TrialRecord` the Store hands out.

The measured columns of ``tuner_trials`` carry the names of :meth:`Measurement.flat`, so both
directions are generic: a number added to ``Measurement`` (or ``Timing``) gets its column from
``_models`` and needs one migration, nothing else; a metric in ``Measurement.extra`` needs
neither.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from tuner.enums import Status
from tuner.workers.measurement import Measurement

from ._keys import env_key
from ._records import TrialRecord

# The measured columns: every name of a measurement's flat view.
MEASURED: tuple[str, ...] = tuple(Measurement(0, Status.OK, None).flat())


def row_values(study_id: int, number: int, config: dict[str, Any], measurement: Measurement,
               reused_from: int | None) -> dict[str, Any]:
    """The ``tuner_trials`` row of trial ``number`` of a study, as column values."""
    return measurement.flat() | {
        "study_id": study_id, "number": number, "config": config, "reused_from": reused_from,
        "env_key": env_key(measurement.environment)}


def to_record(row: Any) -> TrialRecord:
    """A row of ``_queries.trial_select()`` (the trial, its study's name, whether it is on the
    front) as a record."""
    trial, study_name, on_front = row
    measurement = Measurement.from_flat(trial.number, {name: getattr(trial, name)
                                                       for name in MEASURED})
    return TrialRecord(id=trial.id, study=study_name, number=trial.number,
                       config=dict(trial.config), measurement=measurement,
                       env_key=trial.env_key, reused_from=trial.reused_from,
                       on_front=bool(on_front), created_at=utc(trial.created_at))


def utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; every stored one is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
