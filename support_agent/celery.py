"""The Celery app. With REDIS_URL unset, settings make every task run in-process."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support_agent.settings")

app = Celery("supportmem")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
