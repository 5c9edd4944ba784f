"""text_search_benchmark: the statement and the kept words agree on a synthetic long history; it leaves nothing."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tickets.models import Organization, TicketMessage


def test_it_prints_both_timings_and_finds_the_same_rows_both_ways(db):
    out = StringIO()
    call_command("text_search_benchmark", messages=120, per_ticket=10, queries=12, stdout=out)
    text = out.getvalue()
    assert re.search(r"statement: p50 [\d.]+ ms  p95 [\d.]+ ms", text)
    assert re.search(r"kept in the process: p50 [\d.]+ ms", text)
    assert "same rows (but for equal scores at the cut): 12 of 12" in text
    difference = float(re.search(r"largest relative score difference (\S+)", text).group(1))
    assert difference < 1e-12
    assert not Organization.objects.filter(slug__startswith="text-bench-").exists()
    assert not TicketMessage.objects.exists()


def test_it_refuses_nonsense(db):
    with pytest.raises(CommandError):
        call_command("text_search_benchmark", messages=0)
