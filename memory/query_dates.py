"""Dates named in a search query ("What did she buy in May 2023?", "on 13 October, 2023", "in 2022").

Search uses them as a soft preference, never a filter: a message written during (or shortly after) a period
the query names ranks higher. Relative phrases ("last week") are left alone: what they mean depends on when
the question was asked about whom, and the explicit ``start``/``end`` filters exist for that.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): number for number, name in enumerate(calendar.month_abbr) if name})
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.?"  # noqa: E501
_YEAR = r"((?:19|20)\d\d)"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"

_DAY_MONTH_YEAR = re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b", re.IGNORECASE)
_MONTH_DAY_YEAR = re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.IGNORECASE)
_DAY_MONTH = re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}\b", re.IGNORECASE)
_MONTH_DAY = re.compile(rf"\b{_MONTH}\s+{_DAY}\b(?!\s*(?:,\s*)?(?:19|20)\d\d)", re.IGNORECASE)
_MONTH_YEAR = re.compile(rf"\b{_MONTH},?\s+(?:of\s+)?{_YEAR}\b", re.IGNORECASE)
_MONTH_ALONE = re.compile(rf"\b(?:in|during|since|by|early|late|mid|of|last|this|next)\s+{_MONTH}\b", re.IGNORECASE)
_YEAR_ALONE = re.compile(rf"\b(?:in|during|since|year)\s+{_YEAR}\b", re.IGNORECASE)


@dataclass(frozen=True)
class Period:
    """A calendar period the query names. ``year`` None means that month (or day) of any year."""

    year: int | None
    month: int | None = None  # None: the whole year
    day: int | None = None  # None: the whole month

    def bounds(self, year: int) -> tuple[date, date]:
        """First and last day of the period in ``year`` (the period's own year when it has one)."""
        year = self.year or year
        if self.month is None:
            return date(year, 1, 1), date(year, 12, 31)
        if self.day is None:
            return date(year, self.month, 1), date(year, self.month, calendar.monthrange(year, self.month)[1])
        day = min(self.day, calendar.monthrange(year, self.month)[1])
        return date(year, self.month, day), date(year, self.month, day)

    def contains(self, when: date, *, after: timedelta = timedelta(0)) -> bool:
        """Whether ``when`` falls in the period, or up to ``after`` past its end (people report things late)."""
        years = [self.year] if self.year else [when.year, when.year - 1]
        for year in years:
            first, last = self.bounds(year)
            if first <= when <= last + after:
                return True
        return False


def _month(name: str) -> int:
    name = name.lower().rstrip(".")
    return MONTHS.get(name) or MONTHS[name[:3]]


def query_periods(query: str) -> list[Period]:
    """Every explicit date, month or year the query names, most specific first; [] when it names none."""
    periods: list[Period] = []
    taken: list[tuple[int, int]] = []  # spans already read, so "13 October, 2023" is not also "October 2023"

    def add(match: re.Match[str], period: Period) -> None:
        span = match.span()
        if any(start < span[1] and span[0] < end for start, end in taken):
            return
        if period.day is not None and not 1 <= period.day <= 31:
            return
        taken.append(span)
        periods.append(period)

    for match in _DAY_MONTH_YEAR.finditer(query):
        add(match, Period(int(match[3]), _month(match[2]), int(match[1])))
    for match in _MONTH_DAY_YEAR.finditer(query):
        add(match, Period(int(match[3]), _month(match[1]), int(match[2])))
    for match in _DAY_MONTH.finditer(query):
        add(match, Period(None, _month(match[2]), int(match[1])))
    for match in _MONTH_DAY.finditer(query):
        add(match, Period(None, _month(match[1]), int(match[2])))
    for match in _MONTH_YEAR.finditer(query):
        add(match, Period(int(match[2]), _month(match[1])))
    for match in _MONTH_ALONE.finditer(query):
        if match[1].lower() == "may" and not match[0].lower().startswith(("in", "during", "since", "early", "late")):
            continue  # "... of may" / "this may" are too often the verb
        add(match, Period(None, _month(match[1])))
    for match in _YEAR_ALONE.finditer(query):
        add(match, Period(int(match[1])))
    return periods
