"""Connection health checks: a round trip only for a connection that sat idle (support_agent/database)."""

from __future__ import annotations

import psycopg
import pytest
from django.db import close_old_connections, connections

from support_agent.database import base as database_base

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every health check's answer, in order (the real check runs: SELECT 1 on the connection)."""
    answers: list[bool] = []
    real = database_base.DatabaseWrapper.is_usable

    def counted(self: database_base.DatabaseWrapper) -> bool:
        answer = real(self)
        answers.append(answer)
        return answer

    monkeypatch.setattr(database_base.DatabaseWrapper, "is_usable", counted)
    return answers


def _db() -> database_base.DatabaseWrapper:
    wrapper = connections["default"]
    assert isinstance(wrapper, database_base.DatabaseWrapper)
    return wrapper


def _request(sql: str = "SELECT 1") -> int:
    """One request as Django's handler brackets it: start, a query, finish."""
    close_old_connections()
    with _db().cursor() as cursor:
        cursor.execute(sql)
        value = cursor.fetchone()[0]
    close_old_connections()
    return int(value)


def test_the_backend_is_ours() -> None:
    assert _db().settings_dict["CONN_HEALTH_CHECKS"] is True


def test_back_to_back_requests_skip_the_check(checks: list[bool]) -> None:
    _db().ensure_connection()
    _db().fresh_until = 0.0  # idle: the first request checks
    assert [_request() for _ in range(5)] == [1] * 5
    assert checks == [True]


def test_an_idle_connection_is_checked_again(checks: list[bool]) -> None:
    _db().ensure_connection()
    _db().fresh_until = 0.0
    _request()  # checked
    _request()  # in use a moment ago: trusted
    _db().fresh_until = 0.0  # as if FRESH_SECONDS had passed since the last request
    _request()  # checked again
    assert checks == [True, True]


def test_a_connection_the_server_dropped_while_idle_is_replaced(checks: list[bool]) -> None:
    _request()
    pid = _db().connection.info.backend_pid
    params = _db().get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    _db().fresh_until = 0.0
    assert _request("SELECT pg_backend_pid()") != pid  # no error: the check found it dead and reconnected
    assert checks[-1] is False
