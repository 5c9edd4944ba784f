"""A command run against a database that was never migrated fails with one line saying what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_a_command_on_an_unmigrated_database_fails_with_one_clear_line() -> None:
    name = f"unmigrated_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        settings = connection.settings_dict
        url = f"postgresql://{settings['USER']}@{settings['HOST']}:{settings['PORT'] or 5432}/{name}"
        if str(settings["HOST"]).startswith("/"):  # a Unix socket directory
            url = f"postgresql://{settings['USER']}@/{name}?host={settings['HOST']}"
        env = {**os.environ, "DATABASE_URL": url, "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "manage.py", "agent_chat", "--org", "acme", "--customer", "zd-1", "--message", "hi"]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "manage.py migrate" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
