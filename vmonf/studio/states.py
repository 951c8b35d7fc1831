"""The states of a training run, the moves between them, and the groups the UI asks about: one place for all.

The worker announces states (``running``, ``paused``...); the job adds the ones only it can know
(``starting`` before the worker answers, ``stopped`` or ``error`` when it has exited). Values are plain
strings on the wire.
"""

from __future__ import annotations

from enum import Enum


class RunState(str, Enum):
    CREATED = "created"  # not started
    STARTING = "starting"  # a worker is being started
    INITIALIZING = "initializing"  # loading the data, choosing the initialisation (shown as it happens)
    RUNNING = "running"
    PAUSED = "paused"
    STEPPING = "stepping"  # a few steps, then paused again
    FINISHED = "finished"  # paused at the step limit
    DIVERGED = "diverged"  # rolled back to its last finite state; waits for Resume or Stop
    STOPPING = "stopping"
    STOPPED = "stopped"  # ended, model and recording kept
    ERROR = "error"  # ended by a problem the message names

    def __str__(self) -> str:
        return self.value


S = RunState
#: Where each state may lead. Any live state may end in an error, or be stopped.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    S.CREATED: frozenset({S.STARTING}),
    S.STARTING: frozenset({S.INITIALIZING, S.ERROR, S.STOPPING, S.STOPPED}),
    S.INITIALIZING: frozenset({S.INITIALIZING, S.RUNNING, S.ERROR, S.STOPPING, S.STOPPED}),
    S.RUNNING: frozenset({S.RUNNING, S.PAUSED, S.STEPPING, S.FINISHED, S.DIVERGED, S.STOPPING, S.STOPPED, S.ERROR}),
    S.PAUSED: frozenset({S.PAUSED, S.RUNNING, S.STEPPING, S.STOPPING, S.STOPPED, S.ERROR}),
    S.STEPPING: frozenset({S.STEPPING, S.PAUSED, S.RUNNING, S.FINISHED, S.DIVERGED, S.STOPPING, S.STOPPED, S.ERROR}),
    S.FINISHED: frozenset({S.FINISHED, S.RUNNING, S.STEPPING, S.STOPPING, S.STOPPED, S.ERROR}),
    S.DIVERGED: frozenset({S.DIVERGED, S.RUNNING, S.STEPPING, S.PAUSED, S.STOPPING, S.STOPPED, S.ERROR}),
    S.STOPPING: frozenset({S.STOPPING, S.STOPPED, S.ERROR, S.PAUSED, S.RUNNING, S.DIVERGED, S.FINISHED}),
    S.STOPPED: frozenset({S.STOPPED}),
    S.ERROR: frozenset({S.ERROR}),
}
# STOPPING may still see the worker's last announcements (sent before it read the stop) before it ends.

#: The worker is (or will be) doing something: the live panel keeps refreshing.
ACTIVE = frozenset({S.STARTING, S.INITIALIZING, S.RUNNING, S.STEPPING, S.STOPPING})
TRAINING = frozenset({S.RUNNING, S.STEPPING})  # the model is training
HALTED = frozenset({S.PAUSED, S.FINISHED, S.DIVERGED})  # the worker waits: Resume and Step go on from here
RESUMABLE = frozenset({S.PAUSED, S.FINISHED})  # the Resume and Step buttons (after divergence: lower the rate)
ENDED = frozenset({S.STOPPED, S.ERROR})  # the worker has exited
PREPARING = frozenset({S.STARTING, S.INITIALIZING})  # nothing trains yet: the start is shown instead
#: The Pause button: a pause pressed while the run prepares is kept, and the run pauses as it begins. Enabled
#: from Start on, the buttons do not change when training begins, so that moment needs no rerun of the page.
PAUSABLE = TRAINING | PREPARING
PROBEABLE = TRAINING | HALTED  # the worker has a model to answer questions (probe, flow stages) with


def allowed(old: str, new: str) -> bool:
    """Whether a run may go from ``old`` to ``new``."""
    return RunState(new) in TRANSITIONS[RunState(old)]
