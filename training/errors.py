"""The two ways a run ends without a checkpoint, as exceptions every training module raises."""

from __future__ import annotations

from labeling.errors import RLHFError


class TrainingFailed(RLHFError):
    """The run failed (recorded as failed, no checkpoint registered)."""


class Cancelled(TrainingFailed):
    """The run stopped because someone asked (recorded as cancelled)."""
