"""The Celery app. With REDIS_URL unset, settings make every task run in-process."""

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support_agent.settings")

app = Celery("supportmem")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _prepare_service(**kwargs: Any) -> None:
    """A worker or beat is an entry point: it needs the data folder and, without DATABASE_URL, the embedded
    database (this module is imported with the settings, so it cannot do that at import)."""
    from support_agent.bootstrap import service_prepare

    service_prepare()
