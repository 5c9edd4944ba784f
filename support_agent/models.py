"""Agent runs and their steps: the full trace of what the agent saw, said and did."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tickets.models import Customer, Organization, Ticket, TicketMessage


class AgentRun(models.Model):
    class Trigger(models.TextChoices):
        MESSAGE = "message", "Customer message"
        CONSOLIDATION = "consolidation", "Solved-ticket consolidation"
        MANUAL = "manual", "Manual (agent_chat)"
        API = "api", "API"
        WIDGET = "widget", "Chat widget"

    class Audience(models.TextChoices):
        CUSTOMER = "customer", "Customer (widget, API turn, public helpdesk reply)"
        STAFF = "staff", "Staff (internal-note draft, consolidation)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    class StopReason(models.TextChoices):
        END_TURN = "end_turn", "Model ended its turn"
        STEP_LIMIT = "step_limit", "Step limit reached"
        LENGTH = "length", "Completion cut at the token limit"
        LLM_ERROR = "llm_error", "Model call failed"
        ERROR = "error", "Internal error"
        WORKER_LOST = "worker_lost", "The process running it died"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="agent_runs")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="agent_runs")
    ticket = models.ForeignKey(Ticket, on_delete=models.SET_NULL, null=True, blank=True, related_name="agent_runs")
    trigger = models.CharField(max_length=32, choices=Trigger.choices)
    # Who reads what the run writes. A customer-audience run never sees internal notes nor staff-only passages
    # (docs/security.md, "Audience"); set once, when the run is recorded.
    audience = models.CharField(max_length=16, choices=Audience.choices, default=Audience.CUSTOMER)
    trigger_message = models.ForeignKey(
        TicketMessage, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    stop_reason = models.CharField(max_length=32, choices=StopReason.choices, blank=True)
    error = models.TextField(blank=True)
    model_name = models.CharField(max_length=100, blank=True)
    reply = models.TextField(blank=True)
    reply_message = models.ForeignKey(TicketMessage, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    step_count = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # When a worker took the queued run; a queued run nobody picked up is dispatched again by the sweep.
    picked_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # The lease of a running run: the database session holding the customer's lock, and when the run last
    # showed progress. A run whose session is gone, or silent past the lease, is swept (agent_runs_sweep).
    backend_pid = models.PositiveIntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.trigger}, {self.status})"


class AgentStep(models.Model):
    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveIntegerField()
    request_messages = models.JSONField(default=list)
    response = models.JSONField(default=dict)
    tool_calls = models.JSONField(default=list)
    tool_results = models.JSONField(default=list)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    context_tokens = models.PositiveIntegerField(default=0, help_text="Our own count of the compiled prompt.")
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="step_index_unique_per_run")]

    def __str__(self) -> str:
        return f"run {self.run_id} step {self.index}"


class AgentContextState(models.Model):
    """Per customer: the recursive summary of messages moved out of the context window, and where that cut is.

    Messages at or before (evicted_until_at, evicted_until_message_id) are out of context: still in recall
    memory (searchable), represented in the prompt only through ``summary``.
    """

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="agent_context")
    summary = models.TextField(blank=True)
    evicted_until_at = models.DateTimeField(null=True, blank=True)
    evicted_until_message_id = models.BigIntegerField(null=True, blank=True)
    evicted_count = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"context of customer {self.customer_id}"


class CustomerMemory(Customer):
    """A customer seen as staff review them: identities, memory, tickets, passages and agent runs on one page.

    A proxy of tickets.Customer so that the admin page that joins every layer lives in the top layer.
    """

    class Meta:
        proxy = True
        verbose_name = "customer"
        verbose_name_plural = "customers"


class CustomerMerge(models.Model):
    """Staff merged one customer into another: who, when, what moved, and what an undo needs.

    The source customer row is deleted by the merge; ``source_snapshot`` keeps its contact data, core memory and
    context summary, and ``moved`` the ids of every row that moved, so that ``customer_merge_undo`` can put
    them back. Deleted with the surviving customer (erasure takes the record of the merge along).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    into = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges_received")
    source_customer_id = models.BigIntegerField(help_text="The merged-away customer's id (its row is gone).")
    source_snapshot = models.JSONField(default=dict)
    moved = models.JSONField(default=dict)
    merged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    via = models.CharField(max_length=16, default="admin", help_text="admin or api")
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    undo_report = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"customer {self.source_customer_id} merged into {self.into_id}"
