"""The forms of durations and sizes that people read: units, rounding at each boundary,
and what stands for nothing, negative and unbounded values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.units import format_size, human_age, human_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (850e-6, "850 µs"),
        (1e-6, "1.00 µs"),
        (999.4e-6, "999 µs"),
        # Rounding to 3 digits would give 1000 µs: the next unit takes it.
        (999.6e-6, "1.00 ms"),
        (0.0123, "12.3 ms"),
        (0.12345, "123 ms"),
        (0.9994, "999 ms"),
        (0.9996, "1.00 s"),
        (8.0227, "8.02 s"),
        (12.34, "12.3 s"),
        (59.94, "59.9 s"),
        (59.96, "1 min 00 s"),
        (125, "2 min 05 s"),
        (125.4, "2 min 05 s"),
        (3599.4, "59 min 59 s"),
        (3599.6, "1 h 00 min"),
        (3 * 3600 + 600, "3 h 10 min"),
        (86_399, "1 d 0 h"),
        (2 * 86_400 + 4 * 3600, "2 d 4 h"),
        (400 * 86_400, "400 d 0 h"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (float("nan"), "-"), (-1.5, "-1.50 s"), (-125, "-2 min 05 s")],
)
def test_human_duration_of_nothing_and_negatives(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text


def test_human_duration_of_forever() -> None:
    assert human_duration(float("inf")) == "forever"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0.0 s ago"),
        (0.3, "0.3 s ago"),
        (9.94, "9.9 s ago"),
        (9.96, "10 s ago"),
        (42.4, "42 s ago"),
        (59.6, "1 min 00 s ago"),
        (125, "2 min 05 s ago"),
        (3 * 3600 + 600, "3 h 10 min ago"),
        (-2, "in 2.00 s"),
    ],
)
def test_human_age(seconds: float | None, text: str) -> None:
    assert human_age(seconds) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024**2 - 1, "1.0 MiB"),
        (16 * 1024**2, "16.0 MiB"),
        (2 * 1024**3, "2.0 GiB"),
        (-512, "-512 B"),
    ],
)
def test_format_size(n: int | None, text: str) -> None:
    assert format_size(n) == text


@given(st.floats(min_value=1e-6, max_value=1e9, allow_nan=False))
def test_human_duration_is_short_and_never_shows_a_full_unit_below_the_next(
    seconds: float,
) -> None:
    text = human_duration(seconds)
    number, unit, *rest = text.split(" ")
    assert len(text) <= 14
    if unit in ("µs", "ms"):
        assert float(number) < 1000
    elif unit == "s":
        assert float(number) < 60
    else:
        assert unit in ("min", "h", "d") and len(rest) == 2
        bound = {"min": 60, "h": 24}.get(unit)
        assert bound is None or int(number) < bound
        assert int(rest[0]) < {"min": 60, "h": 60, "d": 24}[unit]
