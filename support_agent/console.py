"""The staff console's home screen: what needs attention now, and how it moved over the last two weeks.

Each item is a count of rows in one state, scoped to the staff member's organisation, with a link to the list
that resolves it and a per-day series that shows whether it is growing. The admin site is our own subclass only
to put this above the stock model list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

DAYS = 14
# A run still "running" this long after its last step is almost certainly orphaned by a dead process.
STUCK_AFTER = timedelta(minutes=10)


@dataclass
class Day:
    day: date
    count: int
    height: int  # percent of the tallest day, for the bar


@dataclass
class AttentionItem:
    key: str
    title: str
    explain: str
    count: int
    url: str
    tone: str  # "alert" when something is waiting, "calm" when the count is zero
    days: list[Day] = field(default_factory=list)

    @property
    def recent(self) -> int:
        return sum(d.count for d in self.days[-7:])


def _scoped(queryset: QuerySet[Any], org_id: int | None, org_field: str = "organization_id") -> QuerySet[Any]:
    return queryset if org_id is None else queryset.filter(**{org_field: org_id})


def _series(queryset: QuerySet[Any], time_field: str, today: date) -> list[Day]:
    """Rows per day over the last DAYS days (the day each row entered its state, as far as the row records it)."""
    since = timezone.now() - timedelta(days=DAYS)
    per_day = dict(
        queryset.filter(**{f"{time_field}__gte": since})
        .annotate(day=TruncDate(time_field))
        .values_list("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    counts = [
        (today - timedelta(days=offset), int(per_day.get(today - timedelta(days=offset), 0)))
        for offset in range(DAYS - 1, -1, -1)
    ]
    tallest = max((n for _, n in counts), default=0) or 1
    return [Day(day=d, count=n, height=round(100 * n / tallest)) for d, n in counts]


def _item(
    key: str,
    title: str,
    explain: str,
    queryset: QuerySet[Any],
    url: str,
    time_field: str,
    today: date,
) -> AttentionItem:
    count = queryset.count()
    return AttentionItem(
        key=key,
        title=title,
        explain=explain,
        count=count,
        url=url,
        tone="alert" if count else "calm",
        days=_series(queryset, time_field, today),
    )


def attention_items(*, organization_id: int | None, now: datetime | None = None) -> list[AttentionItem]:
    """Everything a staff member should look at, most urgent first. organization_id None: every organisation."""
    from memory.models import PendingMemoryEdit
    from support_agent.models import AgentRun
    from tickets.models import ImportJob, OutboundDelivery, WebhookEvent

    now = now or timezone.now()
    today = timezone.localdate(now)
    runs = _scoped(AgentRun.objects.all(), organization_id)
    changelist: Callable[[str], str] = lambda name: reverse(f"admin:{name}_changelist")  # noqa: E731
    items = [
        _item(
            "pending_edits",
            "Memory edits waiting for review",
            "The agent proposed these changes; they reach its memory only when someone approves them.",
            _scoped(PendingMemoryEdit.objects.filter(status=PendingMemoryEdit.Status.PENDING), organization_id),
            changelist("memory_pendingmemoryedit"),
            "created_at",
            today,
        ),
        _item(
            "failed_runs",
            "Failed agent runs (last 7 days)",
            "A run that failed left a customer without an answer or a memory update; the trace says why.",
            runs.filter(status=AgentRun.Status.FAILED, created_at__gte=now - timedelta(days=7)),
            changelist("support_agent_agentrun") + "?status__exact=failed",
            "created_at",
            today,
        ),
        _item(
            "stuck_runs",
            "Stuck agent runs",
            "Queued or running for more than ten minutes: the worker that held them may have died.",
            runs.filter(status__in=[AgentRun.Status.QUEUED, AgentRun.Status.RUNNING], created_at__lt=now - STUCK_AFTER),
            changelist("support_agent_agentrun") + "?status__exact=running",
            "created_at",
            today,
        ),
        _item(
            "dead_events",
            "Dead webhook events",
            "Deliveries from a helpdesk that could not be processed after every retry. Open one to replay it.",
            _scoped(WebhookEvent.objects.filter(status=WebhookEvent.Status.DEAD), organization_id),
            changelist("tickets_webhookevent") + "?status__exact=dead",
            "received_at",
            today,
        ),
        _item(
            "dead_deliveries",
            "Dead outbound replies",
            "Agent replies the helpdesk never accepted. Open one to see the attempts and replay it.",
            _scoped(OutboundDelivery.objects.filter(status=OutboundDelivery.Status.DEAD), organization_id),
            changelist("tickets_outbounddelivery") + "?status__exact=dead",
            "created_at",
            today,
        ),
        _item(
            "stopped_imports",
            "History imports that stopped",
            "An import failed (rejected credentials, a helpdesk that kept failing) or its process died. Fix the "
            "cause and start it again: it resumes where it stopped.",
            _scoped(_stopped_imports(ImportJob, now), organization_id),
            changelist("tickets_importjob"),
            "created_at",
            today,
        ),
    ]
    return items


def _stopped_imports(import_job: Any, now: datetime) -> QuerySet[Any]:
    """Failed imports, and running ones whose process has not checkpointed for STUCK_AFTER (killed)."""
    active = [import_job.Status.RUNNING, import_job.Status.CONSOLIDATING]
    return import_job.objects.filter(
        Q(status=import_job.Status.FAILED) | Q(status__in=active, heartbeat_at__lt=now - STUCK_AFTER)
    )


class SupportmemAdminSite(admin.AdminSite):
    site_header = "supportmem · staff"
    site_title = "supportmem staff"
    index_title = "What needs attention"
    index_template = "admin/supportmem/home.html"

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        from tickets.admin import staff_organization_id

        org_id = staff_organization_id(request)
        items = attention_items(organization_id=org_id) if org_id != -1 else []
        context = {"attention": items, "attention_total": sum(i.count for i in items), **(extra_context or {})}
        return super().index(request, context)
