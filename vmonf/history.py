"""Curves that do not grow with the run: a list of rows, thinned evenly once it is full."""

from __future__ import annotations


def append_bounded(history: list[dict], row: dict, limit: int) -> list[dict]:
    """``history + [row]``, with every second row dropped once it passes ``limit`` (even).

    For curves that must not grow with the run (the worker ships its curves in every snapshot; the
    trainer's history lives as long as the run). The list reaches ``limit + 1`` (odd) rows before
    thinning, so the first and the newest rows always stay.
    """
    history.append(row)
    return history[::2] if len(history) > limit else history
