"""Learning-rate schedules as functions of the (fractional) epoch.

``t`` counts epochs from 0 and advances by ``1 / n_batches`` per minibatch, so
the rate changes smoothly within an epoch for the cosine schedule.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "cosine")


def learning_rate_at(schedule, lr, t, epochs, step_size=5, gamma=0.5):
    """The learning rate after ``t`` epochs of training.

    Parameters
    ----------
    schedule : {"constant", "step", "cosine"}
        - ``"constant"``: ``lr``.
        - ``"step"``: ``lr * gamma ** floor(t / step_size)`` (step decay every
          ``step_size`` epochs).
        - ``"cosine"``: ``lr * (1 + cos(pi * (t mod epochs) / epochs)) / 2``,
          falling from ``lr`` to 0 over ``epochs`` epochs.  ``fit`` never goes past
          ``epochs``; ``partial_fit``, which may be called any number of times,
          restarts the cosine every ``epochs`` calls (warm restarts, SGDR).
    lr : float
        The base learning rate.
    t : float
        Epochs done so far (>= 0).
    epochs : int
        Length of one cosine period.
    step_size : int
    gamma : float

    Returns
    -------
    float
    """
    if schedule == "constant":
        return lr
    if schedule == "step":
        return lr * gamma ** math.floor(t / step_size)
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * (t % epochs) / epochs))
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {list(SCHEDULES)}")
