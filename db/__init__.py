"""Storage: studies, trials, generated sources and Pareto fronts in SQL (SQLite or PostgreSQL),
next to Optuna's own tables in the same database."""

from .engine import safe_url
from .errors import StoreError
from .keys import env_key, problem_key
from .records import StudyRecord, TrialPage, TrialRecord, TunedProblem
from .store import Store

__all__ = ["Store", "StoreError", "StudyRecord", "TrialPage", "TrialRecord",
           "TunedProblem", "env_key", "problem_key", "safe_url"]
