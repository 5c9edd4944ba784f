"""Server API (API-key authenticated): customers with identities, tickets, messages.

Also the pieces every API view shares: the base view, throttles, pagination, and the OpenAPI schema
class that documents the error shape on every operation.
"""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any, cast

import django_filters
from django.conf import settings
from django.db.models import Q, QuerySet
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from tickets.auth import ApiClient, ApiKeyAuthentication, IsApiClient
from tickets.models import Customer, CustomerIdentity, Organization, Ticket, TicketMessage
from tickets.selectors import customer_get, customer_list, message_list, ticket_get, ticket_list
from tickets.serializers import (
    CustomerCreateSerializer,
    CustomerSerializer,
    ErrorSerializer,
    MessageCreateSerializer,
    MessageSerializer,
    TicketCreateSerializer,
    TicketSerializer,
)
from tickets.services import TicketChanges, customer_resolve, message_ingest, ticket_upsert

_ERROR_TEXT = {
    400: "Invalid input (details lists the fields).",
    401: "Missing, invalid, expired or revoked credentials.",
    403: "Not allowed (for the widget: the page's origin is not allowed).",
    404: "No such object for your organisation (another organisation's id included).",
    409: "Conflict: the object changed since you read it, or the id is taken.",
    413: "The request body is too large.",
    415: "Unsupported content type; send application/json.",
    428: "The version you read is required (If-Match or version), so a newer change is not overwritten.",
    429: "Too many requests; retry after details.retry_after seconds.",
}


class ErrorDocumentingSchema(AutoSchema):
    """Adds the error shape to every operation, for each status the API can answer with."""

    def _error_codes(self) -> list[int]:
        codes = [400, 401, 404, 429]
        if self.method in {"POST", "PUT", "PATCH"}:
            codes += [413, 415]
        return codes + list(getattr(self.view, "extra_error_codes", []))

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        bodies: dict[str, Any] = super()._get_response_bodies(direction=direction)
        for code in self._error_codes():
            if str(code) not in bodies:
                response = OpenApiResponse(ErrorSerializer, description=_ERROR_TEXT[code])
                bodies[str(code)] = self._get_response_for_code(response, str(code), direction=direction)
        return bodies


class ApiKeySchemeExtension(OpenApiAuthenticationExtension):
    target_class = "tickets.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A server API key: `create_api_key --org SLUG`."}


class WidgetTokenSchemeExtension(OpenApiAuthenticationExtension):
    target_class = "tickets.auth.WidgetTokenAuthentication"
    name = "WidgetToken"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A widget token from /api/widget/{key}/session/."}


class SettingsRateThrottle(SimpleRateThrottle):
    """Rates read from settings on each request (so tests and deployments can change them); None disables."""

    def get_rate(self) -> str | None:
        rates = cast(dict[str, str | None], settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}))
        return rates.get(self.scope or "")


class ApiKeyThrottle(SettingsRateThrottle):
    scope = "api_key"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        client = request.user
        if not isinstance(client, ApiClient):
            return None
        return self.cache_format % {"scope": self.scope, "ident": client.api_key.pk}


class ApiPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ApiView(generics.GenericAPIView):
    """Base of every server API view: API-key auth, per-key throttle, error-documenting schema."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsApiClient]
    throttle_classes = [ApiKeyThrottle]
    pagination_class: type[PageNumberPagination] | None = ApiPagination
    schema = ErrorDocumentingSchema()
    extra_error_codes: list[int] = []
    # No OPTIONS self-description: it would describe serializers most views do not declare; OPTIONS gets 405.
    metadata_class = None
    # Only for the schema generator's benefit (it inspects a queryset); real reads go through selectors.
    queryset: QuerySet[Any] = Customer.objects.none()

    @property
    def schema_only(self) -> bool:
        """True while drf-spectacular inspects the view (no request, no credentials)."""
        return bool(getattr(self, "swagger_fake_view", False))

    @property
    def organization(self) -> Organization:
        client = self.request.user
        assert isinstance(client, ApiClient)  # guaranteed by IsApiClient
        return client.organization

    def get_customer(self) -> Customer:
        return customer_get(organization=self.organization, customer_id=self.kwargs["customer_id"])


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Conflict."
    default_code = "conflict"


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 bound, normalised to UTC: PostgreSQL refuses offsets past ±15:59 that ISO 8601 allows."""

    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        if value is not None:
            try:
                value = value.astimezone(UTC)
            except OverflowError:
                raise exceptions.ValidationError({self.field_name: ["Date out of range."]}) from None
        return super().filter(qs, value)


class CustomerFilter(django_filters.FilterSet):
    email = django_filters.CharFilter(field_name="email", lookup_expr="iexact")
    q = django_filters.CharFilter(method="filter_q", label="Name or email contains")
    source = django_filters.ChoiceFilter(field_name="identities__source", choices=CustomerIdentity.Source.choices)
    external_id = django_filters.CharFilter(field_name="identities__external_id")
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = Customer
        fields: list[str] = []

    def filter_q(self, queryset: QuerySet[Customer], name: str, value: str) -> QuerySet[Customer]:
        return queryset.filter(Q(name__icontains=value) | Q(email__icontains=value))


class CustomerListView(ApiView):
    serializer_class = CustomerSerializer
    filterset_class = CustomerFilter

    def get_queryset(self) -> QuerySet[Customer]:
        if self.schema_only:
            return Customer.objects.none()
        return customer_list(organization=self.organization).prefetch_related("identities").distinct()

    @extend_schema(summary="List customers", responses=CustomerSerializer(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(CustomerSerializer(page, many=True).data)

    @extend_schema(
        summary="Find or create a customer by an external identity",
        request=CustomerCreateSerializer,
        responses={200: CustomerSerializer, 201: CustomerSerializer},
    )
    def post(self, request: Request) -> Response:
        data = CustomerCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        existed = CustomerIdentity.objects.filter(
            organization=self.organization,
            source=data.validated_data["source"],
            external_id=data.validated_data["external_id"],
        ).exists()
        customer = customer_resolve(organization=self.organization, **data.validated_data)
        return Response(CustomerSerializer(customer).data, status=200 if existed else 201)


class CustomerDetailView(ApiView):
    @extend_schema(summary="One customer with their identities", responses=CustomerSerializer)
    def get(self, request: Request, customer_id: int) -> Response:
        return Response(CustomerSerializer(self.get_customer()).data)


class TicketFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Ticket.Status.choices)
    channel = django_filters.ChoiceFilter(choices=Ticket.Channel.choices)
    updated_after = UtcDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Ticket
        fields: list[str] = []


class TicketListView(ApiView):
    serializer_class = TicketSerializer
    filterset_class = TicketFilter
    queryset = Ticket.objects.none()
    extra_error_codes = [409]

    def get_queryset(self) -> QuerySet[Ticket]:
        if self.schema_only:
            return Ticket.objects.none()
        return ticket_list(customer=self.get_customer())

    @extend_schema(summary="A customer's tickets", responses=TicketSerializer(many=True))
    def get(self, request: Request, customer_id: int) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(TicketSerializer(page, many=True).data)

    @extend_schema(
        summary="Open a ticket for a customer", request=TicketCreateSerializer, responses={201: TicketSerializer}
    )
    def post(self, request: Request, customer_id: int) -> Response:
        customer = self.get_customer()
        data = TicketCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        external_id = fields.pop("external_id") or f"api-{uuid.uuid4().hex}"
        taken = Ticket.objects.filter(organization=self.organization, integration__isnull=True, external_id=external_id)
        if taken.exists():
            raise Conflict("A ticket with that external_id already exists.")
        ticket = ticket_upsert(
            organization=self.organization,
            customer=customer,
            integration_id=None,
            external_id=external_id,
            changes=TicketChanges(**fields),
        )
        return Response(TicketSerializer(ticket).data, status=201)


class TicketDetailView(ApiView):
    @extend_schema(summary="One ticket", responses=TicketSerializer)
    def get(self, request: Request, customer_id: int, ticket_id: int) -> Response:
        ticket = ticket_get(customer=self.get_customer(), ticket_id=ticket_id)
        return Response(TicketSerializer(ticket).data)


class MessageFilter(django_filters.FilterSet):
    ticket = django_filters.NumberFilter(field_name="ticket_id", min_value=1)
    author_role = django_filters.ChoiceFilter(choices=TicketMessage.Role.choices)
    since = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = TicketMessage
        fields: list[str] = []


class MessageListView(ApiView):
    serializer_class = MessageSerializer
    filterset_class = MessageFilter
    queryset = TicketMessage.objects.none()

    def get_queryset(self) -> QuerySet[TicketMessage]:
        if self.schema_only:
            return TicketMessage.objects.none()
        return message_list(customer=self.get_customer())

    @extend_schema(
        summary="A customer's messages (recall memory), oldest first", responses=MessageSerializer(many=True)
    )
    def get(self, request: Request, customer_id: int) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(MessageSerializer(page, many=True).data)

    @extend_schema(
        summary="Store a message (the agent is not run: use turns for that)",
        request=MessageCreateSerializer,
        responses={200: MessageSerializer, 201: MessageSerializer},
    )
    def post(self, request: Request, customer_id: int) -> Response:
        customer = self.get_customer()
        data = MessageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        ticket_id = fields.pop("ticket_id")
        ticket = ticket_get(customer=customer, ticket_id=ticket_id) if ticket_id else None
        message, created = message_ingest(customer=customer, ticket=ticket, trigger_agent=False, **fields)
        return Response(MessageSerializer(message).data, status=201 if created else 200)
