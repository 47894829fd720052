"""The names every layer shares: a trial's status and the orders a study's trials are listed in.

Workers produce statuses, the store keeps them as text, the service and the API filter by them;
all of them spell the values from here.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """How a trial ended. Every value but ``ok`` is a failure stored with its reason."""

    OK = "ok"
    INVALID = "invalid"  # rejected by the spec's constraints: never compiled
    COMPILE_ERROR = "compile_error"
    LAUNCH_ERROR = "launch_error"
    WRONG_RESULT = "wrong_result"
    TIMEOUT = "timeout"
    CRASHED = "crashed"


class TrialSort(str, Enum):
    """What a listing of trials can be sorted by; ties always break on the trial number."""

    NUMBER = "number"
    LATENCY = "latency"
    ERROR = "error"
    COMPILE_TIME = "compile_time"
    CREATED = "created"
