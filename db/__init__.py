"""Storage: studies, trials, generated sources and Pareto fronts in SQL (SQLite or PostgreSQL),
next to Optuna's own tables in the same database. Everything a caller needs is named here; the
modules behind it are private."""

from ._engine import safe_url
from ._errors import StoreError
from ._keys import HOST_KEYS, env_key, problem_key
from ._queries import FamilyFilter
from ._records import StudyRecord, TrialPage, TrialPoint, TrialRecord, TunedProblem
from ._store import Store

__all__ = ["HOST_KEYS", "FamilyFilter", "Store", "StoreError", "StudyRecord", "TrialPage", "TrialPoint",
           "TrialRecord", "TunedProblem", "env_key", "problem_key", "safe_url"]
