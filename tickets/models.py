"""Who and what was said: organisations (tenants), customers, helpdesk integrations, tickets, messages."""

from __future__ import annotations

import functools
import random
import secrets
from datetime import timedelta
from typing import Any, ClassVar, Self

import psycopg
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone


def _new_publishable_key() -> str:
    return "pk_" + secrets.token_urlsafe(18)


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


class Organization(models.Model):
    """The tenant. Every other row belongs to exactly one organisation."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    step_limit = models.PositiveSmallIntegerField(
        default=10, help_text="Most steps one agent run may take before it is stopped."
    )
    memory_edits_need_approval = models.BooleanField(
        default=False, help_text="Agent edits to memory wait in the review queue until staff approve them."
    )
    context_window_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Overrides the model's context window (tokens) for this organisation."
    )
    recent_messages_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Most tokens of recent messages in every prompt (default SUPPORTMEM_RECENT_MESSAGES_TOKENS, 2000); "
        "older messages are summarised and found by the agent's recall search.",
    )
    widget_publishable_key = models.CharField(max_length=64, unique=True, default=_new_publishable_key)
    widget_secret = models.CharField(
        max_length=128, default=_new_secret, help_text="Signs user_hash = HMAC-SHA256(secret, user_id)."
    )
    widget_allowed_origins = ArrayField(models.CharField(max_length=255), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class StaffMembership(models.Model):
    """Ties a staff user to the one organisation whose data they may see."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization}"


class Customer(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="customers")
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True, db_index=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["organization", "email"])]

    def __str__(self) -> str:
        return self.name or self.email or f"customer {self.pk}"


class CustomerIdentity(models.Model):
    """One external id of a customer: a helpdesk user id, a widget user id, an email address."""

    class Source(models.TextChoices):
        ZENDESK = "zendesk", "Zendesk"
        INTERCOM = "intercom", "Intercom"
        HELPSCOUT = "helpscout", "Help Scout"
        FRONT = "front", "Front"
        FRESHDESK = "freshdesk", "Freshdesk"
        STANDARD = "standard", "Standard Webhooks"
        CHATWOOT = "chatwoot", "Chatwoot"
        ZAMMAD = "zammad", "Zammad"
        WIDGET = "widget", "Chat widget"
        API = "api", "API"
        EMAIL = "email", "Email"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    source = models.CharField(max_length=32, choices=Source.choices)
    external_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "source", "external_id"], name="identity_unique_per_source")
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id}"


class Integration(models.Model):
    """A helpdesk connected to an organisation: where webhooks come from and where replies go."""

    class Kind(models.TextChoices):
        ZENDESK = "zendesk", "Zendesk"
        INTERCOM = "intercom", "Intercom"
        HELPSCOUT = "helpscout", "Help Scout"
        FRONT = "front", "Front"
        FRESHDESK = "freshdesk", "Freshdesk"
        STANDARD = "standard", "Standard Webhooks"
        CHATWOOT = "chatwoot", "Chatwoot"
        ZAMMAD = "zammad", "Zammad"

    class ReplyMode(models.TextChoices):
        NOTE = "note", "Internal note"
        PUBLIC = "public", "Public reply"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="integrations")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    name = models.CharField(max_length=200, blank=True)
    webhook_token = models.CharField(max_length=64, unique=True, default=_new_secret)
    signing_secret = models.CharField(max_length=255, blank=True)
    outbound_base_url = models.URLField(blank=True)
    outbound_credentials = models.JSONField(default=dict, blank=True)
    reply_mode = models.CharField(max_length=16, choices=ReplyMode.choices, default=ReplyMode.NOTE)
    verifies_emails = models.BooleanField(
        default=False,
        help_text=(
            "Only if this helpdesk proves every requester owns the email it sends: a new requester is then "
            "attached to the existing customer with that email. Off: a new requester is always a new customer "
            "(staff merge customers explicitly). See docs/security.md."
        ),
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "kind"], name="integration_one_per_kind")]

    def __str__(self) -> str:
        return self.name or f"{self.get_kind_display()} ({self.organization.slug})"


class Ticket(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New"
        OPEN = "open", "Open"
        PENDING = "pending", "Pending"
        ON_HOLD = "on_hold", "On hold"
        SOLVED = "solved", "Solved"
        CLOSED = "closed", "Closed"

    class Priority(models.TextChoices):
        LOW = "low", "Low"
        NORMAL = "normal", "Normal"
        HIGH = "high", "High"
        URGENT = "urgent", "Urgent"

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        CHAT = "chat", "Chat"
        WIDGET = "widget", "Chat widget"
        PHONE = "phone", "Phone"
        WEB = "web", "Web form"
        API = "api", "API"
        SOCIAL = "social", "Social"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tickets")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="tickets")
    integration = models.ForeignKey(
        Integration, on_delete=models.SET_NULL, null=True, blank=True, related_name="tickets"
    )
    external_id = models.CharField(max_length=255, blank=True)
    subject = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.NORMAL)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.EMAIL)
    tags = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    solved_at = models.DateTimeField(null=True, blank=True)
    # The helpdesk's own "updated at" of the last event applied: older events never move the ticket back.
    source_updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "external_id"],
                condition=Q(integration__isnull=False) & ~Q(external_id=""),
                name="ticket_external_id_unique_per_integration",
            )
        ]
        indexes = [models.Index(fields=["organization", "customer", "status"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject}"


class TicketMessage(models.Model):
    """One message in recall memory: from a helpdesk, the widget, the API, or the agent."""

    class Role(models.TextChoices):
        CUSTOMER = "customer", "Customer"
        STAFF = "staff", "Staff"
        AGENT = "agent", "Agent"
        SYSTEM = "system", "System"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="messages")
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, null=True, blank=True, related_name="messages")
    author_role = models.CharField(max_length=16, choices=Role.choices)
    author_name = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    is_public = models.BooleanField(default=True)
    external_id = models.CharField(max_length=255, blank=True)
    # Where a message outside any ticket came from (the widget, the API, agent_chat); blank inside a ticket,
    # whose own channel says it. Keeps a widget conversation apart from API turns for the same customer.
    channel = models.CharField(max_length=16, choices=Ticket.Channel.choices, blank=True)
    # What a helpdesk message pointed at, kept beside its text: {"attachments": [names], "links": [urls]}.
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=True)
    search_vector = models.GeneratedField(
        expression=SearchVector("body", config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticket", "external_id"],
                condition=~Q(external_id=""),
                name="message_external_id_unique_per_ticket",
            )
        ]
        indexes = [
            GinIndex(fields=["search_vector"], name="message_search_gin"),
            models.Index(fields=["customer", "created_at"], name="message_customer_time"),
            # A conversation's turns in order: memory search reads each candidate's next turn and whether it opens
            # its conversation through it (one index probe each instead of a scan and sort of the ticket's rows).
            models.Index(fields=["ticket", "created_at", "id"], name="message_ticket_turn_order"),
        ]

    def __str__(self) -> str:
        return f"{self.author_role}: {self.body[:60]}"


class ApiKey(models.Model):
    """A server API key. Only a hash is stored; the key itself is shown once, at creation."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=16, db_index=True)
    key_hash = models.CharField(max_length=128, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.organization.slug})"


def backoff_seconds(attempt: int, *, base: float = 30.0, cap: float = 3600.0) -> float:
    """Exponential backoff with jitter: half fixed, half random, so retries of many rows spread out."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


class RetriedWork(models.Model):
    """The retry state machine shared by webhook events and outbound deliveries.

    A worker *claims* a row (its attempt counted in a committed transaction, ``next_attempt_at`` pushed past
    ``hold`` so a killed worker's row comes back to the sweeper), then either finishes it or *fails* it with
    backoff; rows whose time has come are *due*; staff *replay* a row from a fresh attempt budget.
    """

    OPEN_STATUSES: ClassVar[tuple[str, ...]]
    FAILED_STATUS: ClassVar[str]
    DEAD_STATUS: ClassVar[str]

    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @classmethod
    def claim(
        cls, pk: int, *, max_attempts: int, hold: timedelta, due_only: bool = False, related: tuple[str, ...] = ()
    ) -> Self | None:
        """The row, its attempt counted; None when it is done, dead, not due, locked by another worker, or
        out of attempts (then it is dead: earlier attempts died mid-way)."""
        now = timezone.now()
        with transaction.atomic():
            rows = cls._default_manager.select_for_update(skip_locked=True, of=("self",)).filter(
                pk=pk, status__in=cls.OPEN_STATUSES
            )
            if due_only:
                rows = rows.filter(next_attempt_at__lte=now)
            row = rows.select_related(*related).first() if related else rows.first()
            if row is None:
                return None
            if row.attempts >= max_attempts:
                row.status = cls.DEAD_STATUS  # type: ignore[attr-defined]
                row.last_error = (row.last_error + f"\ngave up after {row.attempts} attempts").strip()
                row.next_attempt_at = None
                row.save(update_fields=["status", "last_error", "next_attempt_at"])
                return None
            row.attempts += 1
            row.next_attempt_at = now + hold
            row.save(update_fields=["attempts", "next_attempt_at"])
        return row

    def fail(
        self,
        error: str,
        *,
        permanent: bool,
        max_attempts: int,
        base: float = 30.0,
        retry_after: float | None = None,
    ) -> float | None:
        """Record a failed attempt: dead when permanent or out of attempts (None), else failed with a backoff
        (its delay in seconds). A row another worker already settled is left alone (None)."""
        with transaction.atomic():
            row = type(self)._default_manager.select_for_update().get(pk=self.pk)
            if row.status not in self.OPEN_STATUSES:  # type: ignore[attr-defined]
                return None
            if permanent or row.attempts >= max_attempts:
                fields: dict[str, Any] = {"status": self.DEAD_STATUS, "next_attempt_at": None}
                delay = None
            else:
                delay = max(retry_after or 0.0, backoff_seconds(row.attempts, base=base))
                fields = {"status": self.FAILED_STATUS, "next_attempt_at": timezone.now() + timedelta(seconds=delay)}
            type(self)._default_manager.filter(pk=self.pk).update(last_error=error[:4000], **fields)
        return delay

    @classmethod
    def due(cls, *, limit: int = 500, push: timedelta | None = None) -> list[int]:
        """Rows whose retry time has come (or whose worker died mid-way). With ``push``, their time moves on by
        that much, so the next sweep does not dispatch them again while they wait in the queue."""
        now = timezone.now()
        with transaction.atomic():
            open_and_due = {"status__in": cls.OPEN_STATUSES, "next_attempt_at__lte": now}
            rows = cls._default_manager.filter(**open_and_due).order_by("next_attempt_at")
            if push is not None:
                rows = rows.select_for_update(skip_locked=True)
            due = list(rows.values_list("pk", flat=True)[:limit])
            if push is not None:
                cls._default_manager.filter(pk__in=due).update(next_attempt_at=now + push)
        return due

    def replay(self, *, status: str, delay: timedelta = timedelta(0), **reset: Any) -> None:
        """Staff replay: back to ``status`` with a fresh attempt budget, due after ``delay``."""
        type(self)._default_manager.filter(pk=self.pk).update(
            status=status, attempts=0, last_error="", next_attempt_at=timezone.now() + delay, **reset
        )


@functools.cache
def _insert_unless_known_sql(meta: Any, columns: tuple[str, ...]) -> str:
    # Names from the model's own meta; every value is a parameter.
    quoted = ", ".join(connection.ops.quote_name(column) for column in columns)
    table, placeholders = connection.ops.quote_name(meta.db_table), ", ".join(["%s"] * len(columns))
    sql = f"INSERT INTO {table} ({quoted}) VALUES ({placeholders}) "  # noqa: S608
    return sql + "ON CONFLICT (integration_id, delivery_key) DO NOTHING RETURNING id"


class WebhookEvent(RetriedWork):
    """One helpdesk delivery exactly as received: the record of truth that processing (and replay) works from."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (event type not handled)"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead (gave up; replay from the admin)"

    OPEN_STATUSES = (Status.RECEIVED, Status.FAILED)
    FAILED_STATUS = Status.FAILED
    DEAD_STATUS = Status.DEAD

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="webhook_events")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    # The vendor's delivery id, or a hash of the body where the vendor sends none: repeats are recognised by it.
    delivery_key = models.CharField(max_length=255)
    event_type = models.CharField(max_length=128, blank=True)
    headers = models.JSONField(default=dict)
    raw_body = models.TextField()
    received_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    # next_attempt_at (RetriedWork): a grace period after intake, a backoff after a failure.
    processed_at = models.DateTimeField(null=True, blank=True)
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, null=True, blank=True, related_name="webhook_events"
    )
    ticket = models.ForeignKey(Ticket, on_delete=models.SET_NULL, null=True, blank=True, related_name="webhook_events")

    class Meta:
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["integration", "delivery_key"], name="webhook_delivery_unique")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_event_due")]

    def __str__(self) -> str:
        return f"{self.integration.kind} {self.event_type or 'event'} ({self.status})"

    def insert_unless_known(self) -> bool:
        """Store this new event in one statement (INSERT … ON CONFLICT DO NOTHING on the delivery key): True
        when stored (its pk is set), False when the integration already has an event with this key.

        The intake hot path: no look-up before it and no transaction around it, so a delivery costs one round
        trip, and two concurrent deliveries of one event cannot both be stored. The values travel as bound
        parameters (psycopg's server-side binding) rather than quoted into the text as Django's cursors do: the
        raw body is the largest value of a delivery, and quoting it was a third of the statement's CPU."""
        meta = type(self)._meta
        fields = [field for field in meta.concrete_fields if not field.primary_key]
        values = [field.get_db_prep_save(field.pre_save(self, True), connection) for field in fields]
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(_insert_unless_known_sql(meta, tuple(field.column for field in fields)), values)
            row = cursor.fetchone()
        if row is None:
            return False
        self.pk = row[0]
        self._state.adding = False
        self._state.db = connection.alias
        return True


class OutboundDelivery(RetriedWork):
    """One agent reply on its way back to the helpdesk; its attempts are logged as OutboundAttempt rows."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead (gave up; replay from the admin)"

    OPEN_STATUSES = (Status.PENDING, Status.FAILED)
    FAILED_STATUS = Status.FAILED
    DEAD_STATUS = Status.DEAD

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="outbound_deliveries")
    message = models.OneToOneField(TicketMessage, on_delete=models.CASCADE, related_name="outbound_delivery")
    reply_mode = models.CharField(max_length=16, choices=Integration.ReplyMode.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    remote_id = models.CharField(max_length=255, blank=True, help_text="The helpdesk's id for the posted reply.")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "outbound deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="outbound_delivery_due")]

    def __str__(self) -> str:
        return f"reply {self.message_id} via {self.integration.kind} ({self.status})"


class OutboundAttempt(models.Model):
    """Every HTTP attempt to deliver a reply, successful or not."""

    delivery = models.ForeignKey(OutboundDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    method = models.CharField(max_length=8)
    url = models.URLField(max_length=1000)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["delivery_id", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}: {self.status_code or self.error[:40]}"


class AdminLogCustomer(models.Model):
    """Whose data an admin log entry is about. django_admin_log keeps each object's text (its repr, the fields
    changed) after the object is gone, and names no customer: this link lets erasure find those entries,
    even for a passage or message deleted long before. Written by OrgScopedAdmin when the admin logs."""

    log_entry = models.OneToOneField(
        "admin.LogEntry", on_delete=models.CASCADE, primary_key=True, related_name="customer_link"
    )
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")

    def __str__(self) -> str:
        return f"admin log {self.log_entry_id} about customer {self.customer_id}"


# How each admin-logged model reaches its customer, for AdminLogCustomer.
_CUSTOMER_PATHS = (("customer_id",), ("run", "customer_id"), ("message", "customer_id"), ("block", "customer_id"))


def customer_id_of(obj: models.Model) -> int | None:
    """The customer a row belongs to (Customer itself, or through one of its links), None for none."""
    if isinstance(obj, Customer):
        return obj.pk
    if isinstance(obj, OutboundAttempt):
        obj = obj.delivery
    for path in _CUSTOMER_PATHS:
        value: Any = obj
        for attribute in path:
            value = getattr(value, attribute, None)
            if value is None:
                break
        if isinstance(value, int):
            return value
    return None


class ImportJob(models.Model):
    """One history import (a helpdesk's API or an NDJSON file) and its checkpoint: the row a restarted import
    resumes from. Counters only count rows this import created, so a resumed import never counts twice."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        CONSOLIDATING = "consolidating", "Consolidating memory"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="import_jobs")
    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, null=True, blank=True, related_name="import_jobs"
    )
    source_file = models.CharField(max_length=500, blank=True, help_text="The NDJSON file of a file import.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    limit = models.PositiveIntegerField(null=True, blank=True, help_text="Stop after this many tickets.")
    consolidate = models.BooleanField(default=True)
    # Where the reader resumes: a vendor cursor, a page URL, or a file's next line number.
    cursor = models.TextField(blank=True)
    tickets_seen = models.PositiveIntegerField(default=0)
    tickets_done = models.PositiveIntegerField(default=0)
    messages_done = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    error_log = models.JSONField(default=list, blank=True, help_text="The first errors, each naming its item.")
    tickets_total = models.PositiveIntegerField(null=True, blank=True, help_text="When the source says.")
    consolidations_total = models.PositiveIntegerField(default=0)
    consolidations_done = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Seconds spent in each stage, for the rate shown and the benchmark's split.
    fetch_seconds = models.FloatField(default=0)
    store_seconds = models.FloatField(default=0)
    embed_seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        source = self.integration.get_kind_display() if self.integration else self.source_file or "file"
        return f"import #{self.pk} from {source} ({self.status})"


class ImportedTicket(models.Model):
    """A ticket an import stored: which tickets its consolidation covers, counted once however often resumed."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="imported_tickets")
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="+")
    line = models.PositiveIntegerField(null=True, blank=True, help_text="The file line it came from.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "ticket"], name="imported_ticket_once_per_job")]

    def __str__(self) -> str:
        return f"ticket {self.ticket_id} of import {self.job_id}"
