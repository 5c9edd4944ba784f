"""The Celery app. With REDIS_URL unset, settings make every task run in-process."""

import os
from typing import Any

from celery import Celery, Task
from celery.signals import beat_init, worker_init

from telemetry.logs import log_context, log_enter, log_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support_agent.settings")

# The header a task message carries its queuer's log context in (request, organisation, event, run ids).
LOG_CONTEXT_HEADER = "supportmem_log_context"


class ContextTask(Task):
    """A task runs with the log context of the code that queued it: a webhook's event id reaches the run it
    started and the reply delivery that run queued, across worker processes."""

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:  # type: ignore[override]
        context = log_context()
        if context:
            options["headers"] = {**(options.get("headers") or {}), LOG_CONTEXT_HEADER: context}
        return super().apply_async(args, kwargs, **options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        # A worker exposes custom headers as request attributes; an eager call keeps them in request.headers.
        context = getattr(request, LOG_CONTEXT_HEADER, None) or (getattr(request, "headers", None) or {}).get(
            LOG_CONTEXT_HEADER
        )
        token = log_enter(context if isinstance(context, dict) else {})
        try:
            return super().__call__(*args, **kwargs)
        finally:
            log_exit(token)


app = Celery("supportmem", task_cls=ContextTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _prepare_service(**kwargs: Any) -> None:
    """A worker or beat is an entry point: it needs the data folder and, without DATABASE_URL, the embedded
    database (this module is imported with the settings, so it cannot do that at import)."""
    from django.conf import settings

    from support_agent.bootstrap import service_prepare

    service_prepare()
    # Absolute, not an increment: worker_init and beat_init both fire in `worker --beat`. Forked children inherit.
    os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), settings.SUPPORTMEM_WORKER_NICE))
