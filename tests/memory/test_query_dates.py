"""Dates named in a query: what is read, what is left alone, and which messages a period covers."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from memory.query_dates import Period, query_periods


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("What did Mel paint in July 2023?", [Period(2023, 7)]),
        ("What painting did she show on October 13, 2023?", [Period(2023, 10, 13)]),
        ("What did Gina find on 1 February, 2023?", [Period(2023, 2, 1)]),
        ("what happened on the 3rd of March 2024", [Period(2024, 3, 3)]),
        ("When did Melanie go camping in June?", [Period(None, 6)]),
        ("How often was the router down in 2023?", [Period(2023)]),
        ("sept. 2022 invoice", [Period(2022, 9)]),
        ("the refund from 12 may", [Period(None, 5, 12)]),
        ("Compare March 2023 with April 2023", [Period(2023, 3), Period(2023, 4)]),
    ],
)
def test_explicit_dates_months_and_years_are_read(query, expected):
    assert query_periods(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "I may need a refund",  # the verb
        "What did she say last week?",  # relative: left to the start/end filters
        "error 2023 on login",  # a number, not "in 2023"
        "order 45 of 2000 parts",  # "of 2000" reads as a year only after a month
    ],
)
def test_words_that_only_look_like_dates_are_left_alone(query):
    assert query_periods(query) == []


def test_impossible_day_is_ignored_and_spans_are_not_read_twice():
    assert query_periods("on 45 March 2023") == [Period(2023, 3)]
    assert query_periods("13 October, 2023") == [Period(2023, 10, 13)]


def test_period_covers_its_days_and_a_grace_period_after():
    june = Period(None, 6)
    assert june.contains(date(2023, 6, 30))
    assert not june.contains(date(2023, 7, 10))
    assert june.contains(date(2023, 7, 10), after=timedelta(days=14))
    assert not june.contains(date(2023, 5, 31), after=timedelta(days=14))
    assert Period(2023).contains(date(2023, 12, 31)) and not Period(2023).contains(date(2024, 1, 20))
    assert Period(2024, 2, 29).contains(date(2024, 2, 29))
    # A month of any year spills into January of the next one.
    assert Period(None, 12).contains(date(2024, 1, 5), after=timedelta(days=14))
