"""Agent-facing API: compiled context, agent turns and runs, export and erasure; the widget API and demo page.

Server endpoints use an organisation API key. Widget endpoints live under the organisation's publishable
key (/api/widget/<key>/…) so that CORS can be answered per organisation, even for a preflight that
carries no credentials; they authenticate with a short-lived widget token scoped to one customer.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, generics
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from support_agent.merge import MergeError, customer_merge, customer_merge_undo
from support_agent.models import AgentRun, CustomerMerge
from support_agent.privacy import customer_erase, customer_export
from support_agent.serializers import (
    AgentRunSerializer,
    AgentRunSummarySerializer,
    CompiledContextSerializer,
    CustomerMergeCreateSerializer,
    CustomerMergeSerializer,
    ErasureSerializer,
    ExportSerializer,
    TurnCreateSerializer,
    WidgetHistoryQuerySerializer,
    WidgetMessageCreateSerializer,
    WidgetMessageSerializer,
    WidgetSessionCreateSerializer,
    WidgetSessionSerializer,
)
from tickets.api import ApiView, Conflict, ErrorDocumentingSchema, SettingsRateThrottle
from tickets.auth import (
    WIDGET_TOKEN_MAX_AGE,
    IsWidgetVisitor,
    WidgetTokenAuthentication,
    WidgetVisitor,
    user_hash_for,
    user_hash_valid,
    widget_organization_get,
    widget_token_issue,
)
from tickets.errors import error_body
from tickets.models import Customer, CustomerIdentity, Organization, Ticket, TicketMessage
from tickets.selectors import customer_get, message_list, ticket_get
from tickets.services import customer_resolve, message_ingest

logger = logging.getLogger(__name__)

DEMO_ORGANIZATION_SLUG = "demo"
DEMO_WIDGET_USER_ID = "user-ferreira"
_KEEPALIVE_SECONDS = 15
# One event of the widget's stream, as an SSE parser reads it; ``data`` is a JSON object.
SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {
            "type": "string",
            "enum": ["message", "run_started", "step", "reply", "run_finished", "done", "error"],
        },
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string"},
    },
}
_END = object()


def _run_for(customer: Customer, run_id: int) -> AgentRun:
    """One door to a run: it must belong to this customer."""
    run = AgentRun.objects.filter(customer=customer, pk=run_id).prefetch_related("steps").first()
    if run is None:
        raise Http404("No such agent run")
    return run


def _customer_turn(*, customer: Customer, body: str, channel: str, ticket_id: int | None = None) -> TicketMessage:
    """Store the customer's message; the caller runs the agent (so the helpdesk path does not, too)."""
    ticket = ticket_get(customer=customer, ticket_id=ticket_id) if ticket_id else None
    message, _ = message_ingest(
        customer=customer,
        ticket=ticket,
        body=body,
        author_role=TicketMessage.Role.CUSTOMER,
        author_name=customer.name,
        channel="" if ticket else channel,
        trigger_agent=False,
    )
    return message


class CompiledContextView(ApiView):
    @extend_schema(
        summary="The compiled prompt for a customer and its token counts (bring your own LLM)",
        responses=CompiledContextSerializer,
    )
    def get(self, request: Request, customer_id: int) -> Response:
        from support_agent.context import compile_context

        compiled = compile_context(customer=self.get_customer())
        return Response(CompiledContextSerializer(compiled).data)


class TurnView(ApiView):
    @extend_schema(
        summary="Send a customer message and run the agent; returns the run with its steps",
        request=TurnCreateSerializer,
        responses={201: AgentRunSerializer},
    )
    def post(self, request: Request, customer_id: int) -> Response:
        from support_agent.services import agent_run

        customer = self.get_customer()
        data = TurnCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        message = _customer_turn(
            customer=customer,
            body=data.validated_data["body"],
            channel=Ticket.Channel.API,
            ticket_id=data.validated_data["ticket_id"],
        )
        run = agent_run(customer=customer, trigger=AgentRun.Trigger.API, message=message, ticket=message.ticket)
        return Response(AgentRunSerializer(_run_for(customer, run.pk)).data, status=201)


class RunListView(ApiView):
    serializer_class = AgentRunSummarySerializer

    @extend_schema(summary="A customer's agent runs, newest first", responses=AgentRunSummarySerializer(many=True))
    def get(self, request: Request, customer_id: int) -> Response:
        runs = AgentRun.objects.filter(customer=self.get_customer()).order_by("-created_at", "-id")
        page = self.paginate_queryset(runs)
        return self.get_paginated_response(AgentRunSummarySerializer(page, many=True).data)


class RunDetailView(ApiView):
    @extend_schema(summary="One agent run with its steps", responses=AgentRunSerializer)
    def get(self, request: Request, customer_id: int, run_id: int) -> Response:
        return Response(AgentRunSerializer(_run_for(self.get_customer(), run_id)).data)


class ExportView(ApiView):
    @extend_schema(summary="Everything held about the customer, as JSON", responses=ExportSerializer)
    def get(self, request: Request, customer_id: int) -> Response:
        return Response(json.loads(json.dumps(customer_export(customer=self.get_customer()), default=str)))


class EraseView(ApiView):
    @extend_schema(
        summary="Erase the customer: every row about them, embeddings and history included",
        request=None,
        responses=ErasureSerializer,
    )
    def post(self, request: Request, customer_id: int) -> Response:
        return Response({"deleted": customer_erase(customer=self.get_customer())})


class CustomerMergeView(ApiView):
    @extend_schema(
        summary="Merge this customer into another of the organisation (recorded; undo with merges/{id}/undo/)",
        request=CustomerMergeCreateSerializer,
        responses={201: CustomerMergeSerializer},
    )
    def post(self, request: Request, customer_id: int) -> Response:
        source = self.get_customer()
        data = CustomerMergeCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        into = customer_get(organization=self.organization, customer_id=data.validated_data["into"])
        try:
            merge = customer_merge(source=source, into=into, user=None, via="api")
        except MergeError as exc:
            raise exceptions.ValidationError({"into": [str(exc)]}) from None
        return Response(CustomerMergeSerializer(merge).data, status=201)


class CustomerMergeUndoView(ApiView):
    extra_error_codes = [409]

    @extend_schema(
        summary="Undo a merge into this customer (see docs/security.md for what is restored)",
        request=None,
        responses=CustomerMergeSerializer,
    )
    def post(self, request: Request, customer_id: int, merge_id: int) -> Response:
        merge = CustomerMerge.objects.filter(into=self.get_customer(), pk=merge_id).first()
        if merge is None:
            raise Http404("No such merge")
        try:
            merge = customer_merge_undo(merge=merge, user=None)
        except MergeError as exc:
            raise Conflict(str(exc)) from None
        return Response(CustomerMergeSerializer(merge).data)


# ---- Widget --------------------------------------------------------------------------------------


class WidgetIPThrottle(SettingsRateThrottle):
    scope = "widget_ip"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class WidgetCustomerThrottle(SettingsRateThrottle):
    scope = "widget_customer"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        visitor = request.user
        if not isinstance(visitor, WidgetVisitor):
            return None
        return self.cache_format % {"scope": self.scope, "ident": visitor.customer.pk}


def _origin_allowed(request: HttpRequest, organization: Organization, origin: str) -> bool:
    same_origin = origin == f"{request.scheme}://{request.get_host()}"
    return same_origin or origin in organization.widget_allowed_origins


class WidgetView(generics.GenericAPIView):
    """Base of the widget endpoints: per-organisation CORS, widget-token auth, per-IP and per-customer throttles."""

    authentication_classes = [WidgetTokenAuthentication]
    permission_classes = [IsWidgetVisitor]
    throttle_classes = [WidgetIPThrottle, WidgetCustomerThrottle]
    schema = ErrorDocumentingSchema()
    extra_error_codes = [403]
    metadata_class = None  # OPTIONS is the CORS preflight, answered in dispatch
    queryset = TicketMessage.objects.none()  # for the schema generator only

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method == "OPTIONS":
            return self._preflight(request, kwargs["publishable_key"])
        return super().dispatch(request, *args, **kwargs)

    def _preflight(self, request: HttpRequest, publishable_key: str) -> HttpResponse:
        organization = Organization.objects.filter(widget_publishable_key=publishable_key).first()
        origin = request.headers.get("Origin", "")
        if organization is None or not origin or not _origin_allowed(request, organization, origin):
            body = error_body("origin_not_allowed", "This origin may not use this widget.")
            return HttpResponse(json.dumps(body), status=403, content_type="application/json")
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "authorization, content-type, accept"
        response["Access-Control-Max-Age"] = "600"
        return self._with_cors(response, origin)

    @staticmethod
    def _with_cors(response: HttpResponseBase, origin: str) -> Any:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Expose-Headers"] = "Retry-After"
        response["Vary"] = "Origin"
        return response

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.widget_organization = widget_organization_get(publishable_key=kwargs["publishable_key"])
        origin = request.headers.get("Origin")
        if origin and not _origin_allowed(request, self.widget_organization, origin):
            raise exceptions.PermissionDenied("This origin may not use this widget.", code="origin_not_allowed")
        super().initial(request, *args, **kwargs)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        origin = request.headers.get("Origin")
        organization = getattr(self, "widget_organization", None)
        if origin and organization is not None and _origin_allowed(request, organization, origin):
            self._with_cors(response, origin)
        return response

    @property
    def visitor(self) -> WidgetVisitor:
        visitor = self.request.user
        assert isinstance(visitor, WidgetVisitor)  # guaranteed by IsWidgetVisitor
        return visitor


class WidgetSessionView(WidgetView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [WidgetIPThrottle]

    def get_authenticate_header(self, request: Request) -> str:
        # A wrong user_hash is a failed authentication: 401, not DRF's default 403.
        return 'HMAC realm="widget"'

    @extend_schema(
        summary="Exchange a verified identity (user_id + user_hash) for a short-lived widget token",
        request=WidgetSessionCreateSerializer,
        responses={201: WidgetSessionSerializer},
        auth=[],
    )
    def post(self, request: Request, publishable_key: str) -> Response:
        data = WidgetSessionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user_id, name = data.validated_data["user_id"], data.validated_data["name"]
        if not user_hash_valid(
            organization=self.widget_organization, user_id=user_id, user_hash=data.validated_data["user_hash"]
        ):
            raise exceptions.AuthenticationFailed("user_hash does not match user_id.", code="invalid_user_hash")
        # The browser is trusted with nothing but the verified user_id: an email sent from it could be anyone's,
        # and customer_resolve merges identities by email.
        customer = customer_resolve(
            organization=self.widget_organization, source=CustomerIdentity.Source.WIDGET, external_id=user_id, name=name
        )
        body = {
            "token": widget_token_issue(customer=customer),
            "token_type": "Bearer",
            "expires_in": WIDGET_TOKEN_MAX_AGE,
            "customer": {"id": customer.pk, "name": customer.name},
        }
        return Response(WidgetSessionSerializer(body).data, status=201)


def _sse(event_type: str, payload: dict[str, Any]) -> str:
    return f"event: {event_type}\ndata: {json.dumps(payload, default=str)}\n\n"


def _public_event(event: dict[str, Any]) -> dict[str, Any]:
    """What of an agent event a browser may see: scalars only (labels, ids, reply text), no tool payloads."""
    return {key: value for key, value in event.items() if isinstance(value, str | int | float | bool) or value is None}


def _agent_in_thread(customer_id: int, message_id: int, events: queue.Queue[Any]) -> None:
    """Runs one widget turn in its own thread (and its own database connection), feeding events to the stream."""
    from support_agent.services import agent_run

    close_old_connections()
    try:
        customer = Customer.objects.get(pk=customer_id)
        message = TicketMessage.objects.get(pk=message_id)
        run = agent_run(customer=customer, trigger=AgentRun.Trigger.WIDGET, message=message, on_event=events.put)
        events.put({"type": "done", "run_id": run.pk, "status": run.status, "reply": run.reply})
    except Exception:
        logger.exception("Widget agent turn failed for customer %s", customer_id)
        events.put({"type": "error", "code": "agent_failed", "message": "The assistant could not answer; try again."})
    finally:
        # Close before announcing the end: once the stream ends, nothing may still hold this thread's connection.
        try:
            connection.close()
        finally:
            events.put(_END)


def _turn_stream(customer: Customer, message: TicketMessage) -> Iterator[str]:
    yield _sse("message", WidgetMessageSerializer(message).data)
    events: queue.Queue[Any] = queue.Queue()
    threading.Thread(target=_agent_in_thread, args=(customer.pk, message.pk, events), daemon=True).start()
    while True:
        try:
            event = events.get(timeout=_KEEPALIVE_SECONDS)
        except queue.Empty:
            yield ": keep-alive\n\n"  # keeps proxies from closing an idle stream while the model thinks
            continue
        if event is _END:
            return
        yield _sse(str(event.get("type", "event")), _public_event(event))


class WidgetMessagesView(WidgetView):
    @extend_schema(
        summary="The conversation history (the newest messages, oldest first)",
        parameters=[WidgetHistoryQuerySerializer],
        responses=WidgetMessageSerializer(many=True),
    )
    def get(self, request: Request, publishable_key: str) -> Response:
        query = WidgetHistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        conversation = message_list(customer=self.visitor.customer).filter(
            ticket__isnull=True, channel=Ticket.Channel.WIDGET, is_public=True
        )
        newest = list(conversation.order_by("-created_at", "-id")[: query.validated_data["limit"]])
        return Response(WidgetMessageSerializer(reversed(newest), many=True).data)

    @extend_schema(
        summary="Send a message; the agent's steps and reply stream back as server-sent events",
        description=(
            "Events: `message` (the stored message), `run_started`, `step` (with a human `label` such as "
            '"Searching your ticket history"), `reply` (the agent\'s answer), `run_finished`, `done` or `error`.'
        ),
        request=WidgetMessageCreateSerializer,
        responses={
            (200, "text/event-stream"): OpenApiResponse(SSE_EVENT_SCHEMA, description="A server-sent event stream.")
        },
    )
    def post(self, request: Request, publishable_key: str) -> StreamingHttpResponse:
        data = WidgetMessageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        customer = self.visitor.customer
        message = _customer_turn(customer=customer, body=data.validated_data["body"], channel=Ticket.Channel.WIDGET)
        response = StreamingHttpResponse(_turn_stream(customer, message), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
        return response


class WidgetRunView(WidgetView):
    @extend_schema(summary="One of this visitor's agent runs (status and reply)", responses=AgentRunSummarySerializer)
    def get(self, request: Request, publishable_key: str, run_id: int) -> Response:
        return Response(AgentRunSummarySerializer(_run_for(self.visitor.customer, run_id)).data)


@csrf_exempt  # an API client never has a CSRF token; without this a POST to a wrong URL gets a 403 page
def api_not_found(request: HttpRequest) -> HttpResponse:
    body = error_body("not_found", "No such API endpoint.", {"path": request.path})
    return HttpResponse(json.dumps(body), status=404, content_type="application/json")


def widget_demo(request: HttpRequest) -> HttpResponse:
    """The demo organisation's page with the widget embedded; it signs the demo customer's identity here,
    server-side, exactly as a customer's own backend would."""
    if not settings.SUPPORTMEM_DEMO:  # it hands out a valid user_hash: never on a real deployment
        raise Http404("The demo is not enabled (SUPPORTMEM_DEMO).")
    organization = Organization.objects.filter(slug=DEMO_ORGANIZATION_SLUG).first()
    if organization is None:
        raise Http404("No demo organisation: run `python manage.py seed_demo` first.")
    identity = CustomerIdentity.objects.filter(
        organization=organization, source=CustomerIdentity.Source.WIDGET, external_id=DEMO_WIDGET_USER_ID
    ).select_related("customer")
    customer = identity.first()
    context = {
        "publishable_key": organization.widget_publishable_key,
        "user_id": DEMO_WIDGET_USER_ID,
        "user_hash": user_hash_for(organization=organization, user_id=DEMO_WIDGET_USER_ID),
        "user_name": customer.customer.name if customer else "",
        "organization": organization,
    }
    return render(request, "widget/demo.html", context)
