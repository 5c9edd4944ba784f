"""Admin for customers and tickets. Every list and page is scoped to the staff member's organisation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from tickets.auth import api_key_create, api_key_revoke, widget_secret_rotate
from tickets.models import (
    AdminLogCustomer,
    ApiKey,
    Customer,
    CustomerIdentity,
    Integration,
    Organization,
    StaffMembership,
    Ticket,
    TicketMessage,
    customer_id_of,
)


def staff_organization_id(request: HttpRequest) -> int | None:
    """The organisation a staff user works for; None for superusers (who see every organisation)."""
    user = request.user
    if getattr(user, "is_superuser", False):
        return None
    membership = getattr(user, "membership", None)
    return membership.organization_id if membership is not None else -1  # -1: no organisation, sees nothing


def _linked(logged: Any, objects: list[Any]) -> Any:
    entries = logged if isinstance(logged, list) else [logged]
    links = [
        AdminLogCustomer(log_entry=entry, customer_id=customer_id)
        for entry, obj in zip(entries, objects, strict=False)
        if (customer_id := customer_id_of(obj)) is not None
    ]
    AdminLogCustomer.objects.bulk_create(links, ignore_conflicts=True)
    return logged


class OrgScopedAdmin(admin.ModelAdmin):
    """Limits every queryset (lists, change pages, foreign-key choices) to the staff member's organisation.

    A missing or another organisation's object is a 404 on its change, delete and history pages (Django's
    default is a redirect to the index with a message).
    """

    org_field = "organization"

    def _get_obj_does_not_exist_redirect(self, request: HttpRequest, opts: Any, object_id: str) -> HttpResponse:
        raise Http404("Not found")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        org_id = staff_organization_id(request)
        if org_id is None:
            return queryset
        return queryset.filter(**{f"{self.org_field}_id": org_id})

    # Every admin log entry about a customer's row is linked to that customer, so that erasing them removes it.
    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> LogEntry:
        return _linked(super().log_addition(request, obj, message), [obj])

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> LogEntry:
        return _linked(super().log_change(request, obj, message), [obj])

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        objects = list(queryset)  # logged before they are deleted: each one's customer is still readable
        return _linked(super().log_deletions(request, queryset), objects)  # the same rows, from its cache

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        org_id = staff_organization_id(request)
        related = db_field.related_model
        if org_id is not None:
            if related is Organization:
                kwargs["queryset"] = Organization.objects.filter(pk=org_id)
            elif any(f.name == "organization" for f in related._meta.get_fields()):
                kwargs["queryset"] = related._default_manager.filter(organization_id=org_id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def masked(secret: str) -> str:
    """A secret as the console shows it: enough to tell two apart, never enough to use."""
    return f"••••••••{secret[-4:]}" if len(secret) > 8 else "••••••••"


@admin.register(Organization)
class OrganizationAdmin(OrgScopedAdmin):
    """Organisation settings, changed by organisation admins; the widget secret is masked and only rotated."""

    org_field = "id"
    list_display = ["name", "slug", "step_limit", "memory_edits_need_approval", "created_at"]
    search_fields = ["name", "slug"]
    fieldsets = [
        (None, {"fields": ["name", "slug"]}),
        (
            "Agent",
            {
                "fields": [
                    "step_limit",
                    "context_window_tokens",
                    "recent_messages_tokens",
                    "memory_edits_need_approval",
                ]
            },
        ),
        (
            "Chat widget",
            {"fields": ["widget_publishable_key", "widget_secret_masked", "widget_allowed_origins"]},
        ),
        (None, {"fields": ["created_at"]}),
    ]
    readonly_fields = ["widget_publishable_key", "widget_secret_masked", "created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organization]:
        queryset = admin.ModelAdmin.get_queryset(self, request)
        org_id = staff_organization_id(request)
        return queryset if org_id is None else queryset.filter(pk=org_id)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The slug is in webhook URLs and commands: fixed once the organisation exists.
        return [*self.readonly_fields, "slug"] if obj is not None else list(self.readonly_fields)

    @admin.display(description="widget secret")
    def widget_secret_masked(self, organization: Organization) -> SafeString:
        if not organization.pk:
            return format_html("{}", "created with the organisation")
        rotate = reverse("admin:tickets_organization_rotate_widget_secret", args=[organization.pk])
        return format_html(
            '<code>{}</code> <button type="submit" form="rotate-widget-secret" class="button" formaction="{}">'
            'Rotate</button><div class="help">Signs the widget\'s user_hash. Rotating shows the new secret once; '
            "every site that computes user_hash must switch to it.</div>",
            masked(organization.widget_secret),
            rotate,
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/rotate-widget-secret/",
                self.admin_site.admin_view(self.rotate_widget_secret_view),
                name="tickets_organization_rotate_widget_secret",
            ),
            *super().get_urls(),
        ]

    def rotate_widget_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        organization = self.get_object(request, unquote(object_id))
        if organization is None:
            raise Http404("Not found")
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:tickets_organization_change", args=[organization.pk]))
        if not self.has_change_permission(request, organization):
            raise PermissionDenied
        secret = widget_secret_rotate(organization=organization)
        messages.warning(
            request,
            format_html(
                "New widget secret: <code>{}</code>. Copy it now: it is not shown again. "
                "The old one no longer signs sessions.",
                secret,
            ),
        )
        return HttpResponseRedirect(reverse("admin:tickets_organization_change", args=[organization.pk]))


@admin.register(StaffMembership)
class StaffMembershipAdmin(OrgScopedAdmin):
    list_display = ["user", "organization"]
    list_select_related = ["user", "organization"]
    raw_id_fields = ["user"]


class CustomerIdentityInline(admin.TabularInline):
    model = CustomerIdentity
    extra = 0
    fields = ["source", "external_id", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Customer)
class CustomerAdmin(OrgScopedAdmin):
    list_display = ["name", "email", "organization", "created_at"]
    list_select_related = ["organization"]
    search_fields = ["name", "email", "identities__external_id"]
    inlines = [CustomerIdentityInline]

    def has_module_permission(self, request: HttpRequest) -> bool:
        # One "Customers" list for staff: the customer page (support_agent). This admin stays reachable from
        # there for editing a customer's record and identities by hand.
        return False

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        for instance in formset.save(commit=False):
            if isinstance(instance, CustomerIdentity):
                instance.organization_id = instance.customer.organization_id
            instance.save()
        for obj in formset.deleted_objects:
            obj.delete()


@admin.register(Integration)
class IntegrationAdmin(OrgScopedAdmin):
    change_form_template = "admin/tickets/integration/change_form.html"
    list_display = ["__str__", "kind", "organization", "reply_mode", "verifies_emails", "is_active"]
    list_filter = ["kind", "is_active", "verifies_emails"]
    readonly_fields = ["webhook_token", "created_at"]

    def get_urls(self) -> list[Any]:
        return _integration_urls(self) + super().get_urls()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = _integration_change_view(self, request, object_id, extra_context)
        return super().change_view(request, object_id, form_url, extra_context=context)


class TicketMessageInline(admin.TabularInline):
    model = TicketMessage
    extra = 0
    fields = ["created_at", "author_role", "author_name", "body", "is_public"]
    readonly_fields = ["created_at", "author_role", "author_name", "body", "is_public"]
    can_delete = False
    show_change_link = True


@admin.register(Ticket)
class TicketAdmin(OrgScopedAdmin):
    list_display = ["__str__", "customer", "status", "priority", "channel", "updated_at"]
    list_filter = ["status", "priority", "channel"]
    list_select_related = ["customer"]
    search_fields = ["subject", "external_id", "customer__name", "customer__email"]
    raw_id_fields = ["customer", "integration"]
    inlines = [TicketMessageInline]


@admin.register(TicketMessage)
class TicketMessageAdmin(OrgScopedAdmin):
    list_display = ["__str__", "customer", "ticket", "author_role", "created_at"]
    list_filter = ["author_role", "is_public"]
    list_select_related = ["customer", "ticket"]
    search_fields = ["body", "customer__email"]
    raw_id_fields = ["customer", "ticket"]
    date_hierarchy = "created_at"


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="Who uses it, e.g. “chat widget backend” or “reporting job”.")


@admin.register(ApiKey)
class ApiKeyAdmin(OrgScopedAdmin):
    """Server API keys: created by organisation admins (the key is shown once), revoked, never edited."""

    list_display = ["prefix", "name", "organization", "created_at", "last_used_at", "state"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    fields = ("prefix", "name", "organization", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    @admin.display(description="state")
    def state(self, key: ApiKey) -> str:
        return f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a key is created and revoked, never edited: the page is read-only, with no Save

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked keys stay listed: who had access, and until when

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None) -> Any:
        if not self.has_add_permission(request):
            raise PermissionDenied
        organization = _staff_organization(request)
        form = ApiKeyCreateForm(request.POST or None)
        created: tuple[ApiKey, str] | None = None
        if request.method == "POST" and form.is_valid():
            created = api_key_create(organization=organization, name=form.cleaned_data["name"])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "New API key",
            "form": form,
            "organization": organization,
            "created_key": created[1] if created else None,
            "created_row": created[0] if created else None,
        }
        return TemplateResponse(request, "admin/tickets/apikey/create.html", context)

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        if not self.has_add_permission(request):
            raise PermissionDenied
        revoked = sum(
            api_key_revoke(organization=key.organization, prefix=key.prefix)
            for key in queryset.select_related("organization")
        )
        self.message_user(request, f"Revoked {revoked} key{'s' if revoked != 1 else ''}.", messages.SUCCESS)


def _staff_organization(request: HttpRequest) -> Organization:
    """The organisation a new object belongs to: the staff member's own (superusers: the only one, or refuse)."""
    org_id = staff_organization_id(request)
    if org_id is None:
        organizations = list(Organization.objects.all()[:2])
        if len(organizations) != 1:
            raise PermissionDenied("A superuser with several organisations creates keys with create_api_key --org.")
        return organizations[0]
    organization = Organization.objects.filter(pk=org_id).first()
    if organization is None:
        raise PermissionDenied
    return organization


# ---------------------------------------------------------------- webhook inbox and outbound replies

from django.shortcuts import get_object_or_404, redirect  # noqa: E402
from django.views.decorators.http import require_POST  # noqa: E402

from tickets.intake import webhook_event_process, webhook_event_replay  # noqa: E402  (beside the admins using them)
from tickets.models import OutboundAttempt, OutboundDelivery, WebhookEvent  # noqa: E402
from tickets.outbound import outbound_deliver, outbound_delivery_replay  # noqa: E402


def _event_replay_now(event: WebhookEvent) -> WebhookEvent:
    """Replay and process at once, so staff see what happened (the queued task then finds it done)."""
    webhook_event_replay(event=event)
    webhook_event_process(event_id=event.pk)
    event.refresh_from_db()
    return event


def _delivery_replay_now(delivery: OutboundDelivery) -> OutboundDelivery:
    outbound_delivery_replay(delivery=delivery)
    outbound_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


def _outcome(label: str, status: str, error: str) -> tuple[int, str]:
    """The message staff see after a replay: what the row became, and why when it did not work."""
    if status in {"processed", "ignored", "sent"}:
        return messages.SUCCESS, f"{label}: {status}."
    reason = error.strip().splitlines()[-1] if error.strip() else "no error recorded"
    if status == "failed":
        return messages.WARNING, f"{label}: failed again, will retry ({reason})."
    return messages.ERROR, f"{label}: still {status} ({reason})."


class ReadOnlyLogAdmin(OrgScopedAdmin):
    """Records of what arrived and what was sent: viewed and replayed, never edited (no Save buttons)."""

    change_form_template = "admin/tickets/replayable_change_form.html"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def can_replay(self, obj: Any) -> bool:
        return obj.status in {"dead", "failed"}

    def replay_one(self, obj: WebhookEvent | OutboundDelivery) -> tuple[int, str]:
        if isinstance(obj, WebhookEvent):
            event = _event_replay_now(obj)
            return _outcome(f"Event {event.pk}", event.status, event.last_error)
        delivery = _delivery_replay_now(obj)
        return _outcome(f"Reply {delivery.pk}", delivery.status, delivery.last_error)

    @admin.action(description="Replay selected (again, now) and show the outcome")
    def replay(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in list(queryset):
            level, text = self.replay_one(obj)
            self.message_user(request, text, level)

    def get_urls(self) -> list[URLPattern]:
        replay = self.admin_site.admin_view(require_POST(self.replay_view))
        name = f"{self.opts.app_label}_{self.opts.model_name}_replay"
        return [path("<int:object_id>/replay/", replay, name=name), *super().get_urls()]

    def replay_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise Http404("Not found")
        obj = get_object_or_404(self.get_queryset(request), pk=object_id)
        level, text = self.replay_one(obj)
        self.message_user(request, text, level)
        return redirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk]))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        context = {**(extra_context or {}), "can_replay": obj is not None and self.can_replay(obj)}
        return super().change_view(request, object_id, form_url, extra_context=context)


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyLogAdmin):
    """The webhook inbox: every delivery as received; failed and dead ones can be replayed."""

    list_display = ["received_at", "integration", "event_type", "status", "attempts", "short_error", "processed_at"]
    list_filter = ["status", "integration__kind"]
    list_select_related = ["integration__organization"]
    search_fields = ["delivery_key", "event_type", "last_error"]
    date_hierarchy = "received_at"
    raw_id_fields = ["customer", "ticket"]
    actions = ["replay"]
    readonly_fields = [
        "integration", "organization", "delivery_key", "event_type", "headers", "raw_body", "received_at",
        "status", "attempts", "last_error", "next_attempt_at", "processed_at", "customer", "ticket",
    ]  # fmt: skip

    @admin.display(description="last error")
    def short_error(self, event: WebhookEvent) -> str:
        return event.last_error[:80]


class OutboundAttemptInline(admin.TabularInline):
    model = OutboundAttempt
    extra = 0
    can_delete = False
    fields = ["number", "created_at", "method", "url", "status_code", "duration_ms", "error", "response_excerpt"]
    readonly_fields = [
        "number", "created_at", "method", "url", "status_code", "duration_ms", "error", "response_excerpt",
    ]  # fmt: skip

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(OutboundDelivery)
class OutboundDeliveryAdmin(ReadOnlyLogAdmin):
    """Agent replies on their way to the helpdesk, with every attempt; dead ones can be replayed."""

    list_display = ["created_at", "integration", "message", "reply_mode", "status", "attempts", "sent_at"]
    list_filter = ["status", "integration__kind", "reply_mode"]
    list_select_related = ["integration__organization", "message"]
    raw_id_fields = ["message"]
    inlines = [OutboundAttemptInline]
    actions = ["replay"]
    readonly_fields = [
        "organization", "integration", "message", "reply_mode", "status", "attempts", "next_attempt_at",
        "remote_id", "last_error", "created_at", "sent_at",
    ]  # fmt: skip


@admin.register(OutboundAttempt)
class OutboundAttemptAdmin(OrgScopedAdmin):
    """Read-only: a log of what was sent and answered."""

    org_field = "delivery__organization"
    list_display = ["created_at", "delivery", "number", "method", "url", "status_code", "duration_ms", "error"]
    list_filter = ["status_code"]
    list_select_related = ["delivery__integration"]
    readonly_fields = [
        "delivery",
        "number",
        "method",
        "url",
        "status_code",
        "response_excerpt",
        "error",
        "duration_ms",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# ---------------------------------------------------------------- history import

from django.utils.dateparse import parse_date  # noqa: E402

from tickets.imports import ImportFigures, history_reader_kinds, import_figures, import_job_start  # noqa: E402
from tickets.models import ImportJob  # noqa: E402

MAX_LIMIT = 2_147_483_647  # ImportJob.limit is a PostgreSQL integer
from tickets.tasks import import_history_dispatch  # noqa: E402


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def import_progress(job: ImportJob) -> dict[str, Any]:
    """What the progress panel shows about one import."""
    figures: ImportFigures = import_figures(job)
    target = min(filter(None, [job.tickets_total, job.limit]), default=None)
    consolidating = job.status == ImportJob.Status.CONSOLIDATING
    done, total = (
        (job.consolidations_done, job.consolidations_total)
        if consolidating
        else (job.tickets_done + job.errors, target)
    )
    return {
        "job": job,
        "running": job.status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING, ImportJob.Status.CONSOLIDATING),
        "percent": round(100 * done / total) if total else None,
        "rate": f"{figures.messages_per_second:.0f} messages/s" if figures.messages_per_second else "—",
        "ticket_rate": f"{figures.tickets_per_second:.1f} tickets/s" if figures.tickets_per_second else "—",
        "eta": _duration(figures.eta_seconds),
        "elapsed": _duration(figures.elapsed_seconds),
        "url": reverse("admin:tickets_importjob_change", args=[job.pk]),
    }


@admin.register(ImportJob)
class ImportJobAdmin(OrgScopedAdmin):
    """History imports: progress while they run, the outcome and the errors (each naming its item) after."""

    change_form_template = "admin/tickets/importjob/change_form.html"
    list_display = ["__str__", "status", "tickets_done", "messages_done", "errors", "rate", "started_at", "finished_at"]
    list_filter = ["status", "integration__kind"]
    list_select_related = ["integration"]
    fields = [
        "organization", "integration", "source_file", "status", "since", "until", "limit", "consolidate",
        "cursor", "created_at", "started_at", "heartbeat_at", "finished_at",
    ]  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="rate")
    def rate(self, job: ImportJob) -> str:
        return str(import_progress(job)["rate"])

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        job = self.get_object(request, object_id)  # None for another organisation's id or one that is no id
        if job is None:
            raise Http404("Not found")
        context = {**(extra_context or {}), "progress": import_progress(job)}
        return super().change_view(request, object_id, form_url, extra_context=context)


def _integration_import_start(admin_view: IntegrationAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    integration = admin_view.get_object(request, object_id)
    if integration is None:
        raise Http404("Not found")
    if request.method != "POST":
        return redirect("admin:tickets_integration_change", integration.pk)
    if not request.user.has_perm("tickets.add_importjob"):
        raise PermissionDenied
    since_text = request.POST.get("since", "").strip()
    try:
        since_day = parse_date(since_text) if since_text else None
    except ValueError:  # well formed but no such day (2024-13-45)
        since_day = None
    limit_text = request.POST.get("limit", "").strip()
    limit_ok = not limit_text or (limit_text.isascii() and limit_text.isdigit() and 0 < int(limit_text) <= MAX_LIMIT)
    if not limit_ok or (since_text and since_day is None):
        messages.error(request, f"Since must be a date (YYYY-MM-DD) and limit a whole number from 1 to {MAX_LIMIT}.")
        return redirect("admin:tickets_integration_change", integration.pk)
    since = datetime.combine(since_day, datetime.min.time(), tzinfo=UTC) if since_day else None
    job, resumed = import_job_start(
        organization=integration.organization,
        integration=integration,
        since=since,
        limit=int(limit_text) if limit_text else None,
        consolidate=request.POST.get("consolidate") == "on",
    )
    import_history_dispatch(job.pk)
    messages.success(request, f"{'Resumed' if resumed else 'Started'} import #{job.pk}.")
    return redirect("admin:tickets_importjob_change", job.pk)


def _integration_urls(admin_view: IntegrationAdmin) -> list[URLPattern]:
    return [
        path(
            "<path:object_id>/import/",
            admin_view.admin_site.admin_view(
                lambda request, object_id: _integration_import_start(admin_view, request, object_id)
            ),
            name="tickets_integration_import",
        )
    ]


def _integration_change_view(
    admin_view: IntegrationAdmin, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None
) -> dict[str, Any]:
    integration = admin_view.get_object(request, object_id)
    if integration is None:
        return extra_context or {}
    jobs = list(ImportJob.objects.filter(integration=integration).order_by("-created_at")[:5])
    return {
        **(extra_context or {}),
        "imports": [import_progress(job) for job in jobs],
        "can_import": integration.kind in history_reader_kinds() and request.user.has_perm("tickets.add_importjob"),
        "import_url": reverse("admin:tickets_integration_import", args=[integration.pk]),
    }
