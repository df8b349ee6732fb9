"""The benchmark table: one row per measurement, printed as it is measured."""

from __future__ import annotations

import statistics

ROWS: list[tuple[str, str, str, str]] = []  # (section, measurement, value, note)


def row(section: str, measurement: str, value: str, note: str = "") -> None:
    ROWS.append((section, measurement, value, note))
    print(f"  {section:10s} {measurement:55s} {value:>14s}  {note}", flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs)
