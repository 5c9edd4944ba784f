"""Django's PostgreSQL backend, with health checks that skip connections in use a moment ago.

With ``CONN_HEALTH_CHECKS`` Django sends ``SELECT 1`` before the first query of every request that reuses a
persistent connection. Under load that round trip is about half the database time of a webhook delivery (one
``INSERT`` otherwise). A connection that finished a request less than ``FRESH_SECONDS`` ago, without an error
(Django checks a connection that saw one itself), is trusted instead; an idle one is checked as before, so a
database restarted while the service was quiet still costs no request an error.
"""

from __future__ import annotations

import time

from django.db.backends.postgresql import base

FRESH_SECONDS = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    fresh_until = 0.0

    def close_if_unusable_or_obsolete(self) -> None:
        """Called as each request starts and ends: a connection in use a moment ago needs no ``SELECT 1``."""
        super().close_if_unusable_or_obsolete()
        if self.connection is None:
            self.fresh_until = 0.0
            return
        now = time.monotonic()
        if now < self.fresh_until:
            self.health_check_done = True
        self.fresh_until = now + FRESH_SECONDS
