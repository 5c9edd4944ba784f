"""The embedded PostgreSQL's memory settings: sized from the machine, overridable, and in effect."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from support_agent import embedded_pg
from support_agent.embedded_pg import SETTINGS_FILE, machine_settings, server_settings, settings_write

GIB = 1024**3


def test_a_24_gib_two_core_machine_gets_a_quarter_for_buffers_and_room_for_an_hnsw_build():
    settings = server_settings(ram_bytes=24 * GIB, cpus=2, environ={})
    assert settings["shared_buffers"] == "6144MB"
    assert settings["effective_cache_size"] == "18432MB"
    assert settings["work_mem"] == "48MB"
    assert settings["maintenance_work_mem"] == "6144MB"  # a 1M-passage HNSW graph (about 3 GB) fits
    assert settings["autovacuum_work_mem"] == "768MB"
    assert settings["max_parallel_maintenance_workers"] == "1"
    assert settings["effective_io_concurrency"] == "128"  # a bitmap heap scan asks for pages ahead


def test_without_posix_fadvise_nothing_is_read_ahead(monkeypatch):
    # PostgreSQL refuses to start with effective_io_concurrency above 0 where the OS cannot read ahead (macOS).
    monkeypatch.setattr(embedded_pg, "CAN_PREFETCH", False)
    assert server_settings(ram_bytes=24 * GIB, cpus=2, environ={})["effective_io_concurrency"] == "0"


def test_small_and_large_machines_stay_within_bounds():
    small = server_settings(ram_bytes=GIB, cpus=1, environ={})
    assert small["shared_buffers"] == "256MB" and small["work_mem"] == "4MB"
    assert small["effective_cache_size"] == "768MB" and small["max_parallel_maintenance_workers"] == "0"
    large = server_settings(ram_bytes=512 * GIB, cpus=64, environ={})
    assert large["shared_buffers"] == "8192MB" and large["work_mem"] == "64MB"
    assert large["maintenance_work_mem"] == "16384MB" and large["max_parallel_maintenance_workers"] == "4"


def test_the_environment_sizes_for_less_memory_or_sets_one_value():
    shared = server_settings(ram_bytes=24 * GIB, cpus=2, environ={"SUPPORTMEM_PG_RAM_MB": "4096"})
    assert shared["shared_buffers"] == "1024MB" and shared["effective_cache_size"] == "3072MB"
    one = server_settings(ram_bytes=24 * GIB, cpus=2, environ={"SUPPORTMEM_PG_WORK_MEM": "16MB"})
    assert one["work_mem"] == "16MB" and one["shared_buffers"] == "6144MB"
    spinning = server_settings(ram_bytes=24 * GIB, cpus=2, environ={"SUPPORTMEM_PG_EFFECTIVE_IO_CONCURRENCY": "2"})
    assert spinning["effective_io_concurrency"] == "2" and spinning["work_mem"] == "48MB"
    with pytest.raises(ImproperlyConfigured, match="SUPPORTMEM_PG_RAM_MB"):
        server_settings(ram_bytes=GIB, cpus=1, environ={"SUPPORTMEM_PG_RAM_MB": "lots"})
    with pytest.raises(ImproperlyConfigured, match="too small"):
        server_settings(ram_bytes=GIB, cpus=1, environ={"SUPPORTMEM_PG_RAM_MB": "100"})
    with pytest.raises(ImproperlyConfigured, match="not a PostgreSQL value"):
        server_settings(ram_bytes=GIB, cpus=1, environ={"SUPPORTMEM_PG_SHARED_BUFFERS": "1GB'; x = '1"})


def test_settings_are_written_once_and_included_once(tmp_path):
    (tmp_path / "postgresql.conf").write_text("max_connections = 100\n")
    assert settings_write(tmp_path, {"work_mem": "8MB"}) is True
    assert settings_write(tmp_path, {"work_mem": "8MB"}) is False  # nothing changed: no reload needed
    assert (tmp_path / SETTINGS_FILE).read_text().endswith("work_mem = '8MB'\n")
    assert (tmp_path / "postgresql.conf").read_text().count(SETTINGS_FILE) == 1
    assert settings_write(tmp_path, {"work_mem": "16MB"}) is True


@pytest.mark.django_db
def test_the_running_test_server_uses_the_machine_settings():
    # The test session's PostgreSQL was initialised fresh and restarted once with the computed settings.
    expected = machine_settings()
    with connection.cursor() as cursor:
        for name in (
            "shared_buffers",
            "work_mem",
            "maintenance_work_mem",
            "max_parallel_maintenance_workers",
            "effective_io_concurrency",
        ):
            cursor.execute(f"SELECT setting, unit FROM pg_settings WHERE name = '{name}'")
            setting, unit = cursor.fetchone()
            cursor.execute("SELECT pg_size_bytes(%s) / 1024, pg_size_bytes(%s)", [expected[name], expected[name]])
            in_kb, plain = cursor.fetchone()
            if unit is None:
                assert int(setting) == plain, name
            else:
                block = {"8kB": 8, "kB": 1}[unit]
                assert int(setting) * block == in_kb, name
