"""cluster_tables rewrites passages in organisation/customer order, so one customer's rows sit together."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from memory.locality import disk_probe, tables_cluster
from memory.services import Provenance, passage_insert


def _physical_owners() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT customer_id FROM memory_archivalpassage ORDER BY ctid")
        return [row[0] for row in cursor.fetchall()]


def _runs(values: list[int]) -> int:
    return sum(1 for i, value in enumerate(values) if i == 0 or values[i - 1] != value)


@pytest.mark.django_db(transaction=True)
def test_cluster_groups_each_customers_passages_and_keeps_every_row(actors):
    for i in range(6):  # arrival order interleaves the two customers
        for customer in (actors.customer, actors.other_customer):
            passage_insert(organization=actors.org, customer=customer, text=f"fact {i}", provenance=Provenance())
    before = _physical_owners()
    assert _runs(before) == 12
    out = io.StringIO()
    call_command("cluster_tables", stdout=out)
    after = _physical_owners()
    assert sorted(after) == sorted(before) and _runs(after) == 2
    assert "memory_archivalpassage: clustered by passage_owner_time" in out.getvalue()
    assert "tickets_ticketmessage: clustered by message_customer_time" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_only_known_tables_can_be_clustered():
    with pytest.raises(ValueError, match="Not a clustered table"):
        tables_cluster(tables=("auth_user",))
    with pytest.raises(CommandError):
        call_command("cluster_tables", "--table", "auth_user", stdout=io.StringIO(), stderr=io.StringIO())


def test_a_disk_probe_times_random_reads_of_the_files_it_is_given(tmp_path):
    data = tmp_path / "16384"
    data.write_bytes(bytes(range(256)) * 32 * 10)  # ten 8 kB pages
    (tmp_path / "empty").write_bytes(b"")
    probe = disk_probe([data, tmp_path / "empty"], reads=40)
    assert probe.reads == 40 and 0 < probe.p50_us <= probe.p95_us and 0 <= probe.over_1ms <= 40
    with pytest.raises(ValueError, match="every file is empty"):
        disk_probe([tmp_path / "empty"])
