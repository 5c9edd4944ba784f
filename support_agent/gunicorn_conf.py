"""gunicorn's configuration for `make run` (`gunicorn -c python:support_agent.gunicorn_conf`).

The master prepares the service once (data folder, embedded database when DATABASE_URL is unset) before it
forks the workers, which inherit the exported DATABASE_URL.
"""

from __future__ import annotations

import os

from support_agent.bootstrap import service_prepare
from support_agent.env import env_int

service_prepare()

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = env_int("WEB_CONCURRENCY", 2)
threads = env_int("SUPPORTMEM_WEB_THREADS", 8)
timeout = 120
accesslog = "-"
