"""Server API for memory: core memory blocks (read, update with optimistic concurrency) and archival passages."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from memory.models import ArchivalPassage, ChangeSource, MemoryBlock
from memory.selectors import (
    blocks_for_customer,
    message_search,
    message_search_organization,
    passage_search,
    passages_for,
)
from memory.serializers import (
    MemoryBlockCreateSerializer,
    MemoryBlockSerializer,
    MemoryBlockUpdateSerializer,
    MessageSearchQuerySerializer,
    MessageSearchResultSerializer,
    PassageCreateSerializer,
    PassageSearchQuerySerializer,
    PassageSearchResultSerializer,
    PassageSerializer,
    PassageSupersedeSerializer,
)
from memory.services import (
    MemoryEditError,
    Provenance,
    block_create,
    block_delete,
    block_set_value,
    passage_delete,
    passage_insert,
    passage_supersede,
)
from tickets.api import ApiView, Conflict
from tickets.auth import ApiClient
from tickets.models import Customer
from tickets.selectors import customer_get

_IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description='The block version you read (its ETag, e.g. "3"), or "version" in the body; one of the two is '
    "required (428 without). A stale version gets 409.",
)
_DELETE_REASON = OpenApiParameter(
    "reason", OpenApiTypes.STR, OpenApiParameter.QUERY, required=False, description="Kept in the block's history."
)
_ETAG_VERSION = re.compile(r'^\s*(?:W/)?"?(\d{1,18})"?\s*$')


class PreconditionRequired(exceptions.APIException):
    status_code = 428
    default_detail = (
        'Send the version you read, as If-Match (its ETag, e.g. "3") or "version" in the body, so that a '
        "change made since is not overwritten."
    )
    default_code = "precondition_required"


def _api_provenance(request: Request, reason: str = "") -> Provenance:
    client = request.user
    assert isinstance(client, ApiClient)
    key = f"API key {client.api_key.prefix}"
    return Provenance(source=ChangeSource.API, reason=f"{reason} ({key})" if reason else key)


def _expected_version(request: Request, body_version: int | None) -> int | None:
    """The version the client read. None only for an explicit "If-Match: *" (overwrite whatever is there)."""
    header = request.headers.get("If-Match")
    if header is not None and header.strip() == "*":
        return body_version
    if header is None:
        if body_version is None:
            raise PreconditionRequired()
        return body_version
    match = _ETAG_VERSION.match(header)
    if match is None:
        raise exceptions.ValidationError({"If-Match": ['Send the version as an ETag, e.g. "3".']})
    return int(match.group(1))


def _block_response(block: MemoryBlock) -> Response:
    return Response(MemoryBlockSerializer(block).data, headers={"ETag": f'"{block.version}"'})


class BlockUpdateMixin:
    def update_block(self, request: Request, block: MemoryBlock) -> Response:
        data = MemoryBlockUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        value = data.validated_data["value"]
        if len(value) > block.char_limit:
            raise exceptions.ValidationError({"value": [f"At most {block.char_limit} characters for this block."]})
        expected = _expected_version(request, data.validated_data.get("version"))
        provenance = _api_provenance(request, data.validated_data["reason"].strip())
        updated = block_set_value(block=block, value=value, provenance=provenance, expected_version=expected)
        return _block_response(updated)


def _block_create(request: Request, *, organization: Any, customer: Customer | None) -> Response:
    data = MemoryBlockCreateSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    fields = dict(data.validated_data)
    reason = fields.pop("reason") or "created through the API"
    base = _api_provenance(request)
    provenance = replace(base, reason=f"{reason} ({base.reason})")
    try:
        block = block_create(organization=organization, customer=customer, provenance=provenance, **fields)
    except MemoryEditError as exc:
        raise Conflict(str(exc)) from None
    response = _block_response(block)
    response.status_code = 201
    return response


def _block_delete(request: Request, block: MemoryBlock) -> Response:
    base = _api_provenance(request)
    reason = request.query_params.get("reason", "").replace("\x00", "").strip()[:60]
    provenance = replace(base, reason=f"{reason or 'deleted through the API'} ({base.reason})")
    block_delete(block=block, provenance=provenance)
    return Response(status=204)


class CustomerBlockListView(ApiView):
    pagination_class = None  # a handful of blocks: one plain list
    extra_error_codes = [409]  # creating a label that exists

    @extend_schema(
        summary="A customer's core memory: the organisation's blocks, then the customer's",
        responses=MemoryBlockSerializer(many=True),
    )
    def get(self, request: Request, customer_id: int) -> Response:
        return Response(MemoryBlockSerializer(blocks_for_customer(customer=self.get_customer()), many=True).data)

    @extend_schema(
        summary="Create a block in the customer's core memory (409 when the label exists)",
        request=MemoryBlockCreateSerializer,
        responses={201: MemoryBlockSerializer},
    )
    def post(self, request: Request, customer_id: int) -> Response:
        customer = self.get_customer()
        return _block_create(request, organization=customer.organization, customer=customer)


class CustomerBlockDetailView(BlockUpdateMixin, ApiView):
    extra_error_codes = [409, 428]

    def get_block(self) -> MemoryBlock:
        customer = self.get_customer()
        block = MemoryBlock.objects.filter(
            organization=self.organization, customer=customer, label=self.kwargs["label"]
        )
        return _first_or_404(block)

    @extend_schema(summary="One of the customer's memory blocks (ETag: its version)", responses=MemoryBlockSerializer)
    def get(self, request: Request, customer_id: int, label: str) -> Response:
        return _block_response(self.get_block())

    @extend_schema(
        summary="Replace a customer block's value (optimistic concurrency)",
        parameters=[_IF_MATCH],
        request=MemoryBlockUpdateSerializer,
        responses=MemoryBlockSerializer,
    )
    def patch(self, request: Request, customer_id: int, label: str) -> Response:
        return self.update_block(request, self.get_block())

    @extend_schema(
        summary="Delete a customer block (its history keeps every version)",
        parameters=[_DELETE_REASON],
        responses={204: None},
    )
    def delete(self, request: Request, customer_id: int, label: str) -> Response:
        return _block_delete(request, self.get_block())


class OrganizationBlockListView(ApiView):
    pagination_class = None
    extra_error_codes = [409]  # creating a label that exists

    @extend_schema(
        summary="The organisation-wide blocks (persona, policies, …)", responses=MemoryBlockSerializer(many=True)
    )
    def get(self, request: Request) -> Response:
        blocks = MemoryBlock.objects.filter(organization=self.organization, customer__isnull=True).order_by("label")
        return Response(MemoryBlockSerializer(blocks, many=True).data)

    @extend_schema(
        summary="Create an organisation-wide block, shared by every customer's agent (409 when the label exists)",
        request=MemoryBlockCreateSerializer,
        responses={201: MemoryBlockSerializer},
    )
    def post(self, request: Request) -> Response:
        return _block_create(request, organization=self.organization, customer=None)


class OrganizationBlockDetailView(BlockUpdateMixin, ApiView):
    extra_error_codes = [409, 428]

    def get_block(self) -> MemoryBlock:
        blocks = MemoryBlock.objects.filter(
            organization=self.organization, customer__isnull=True, label=self.kwargs["label"]
        )
        return _first_or_404(blocks)

    @extend_schema(summary="One organisation-wide block (ETag: its version)", responses=MemoryBlockSerializer)
    def get(self, request: Request, label: str) -> Response:
        return _block_response(self.get_block())

    @extend_schema(
        summary="Replace an organisation block's value (optimistic concurrency)",
        parameters=[_IF_MATCH],
        request=MemoryBlockUpdateSerializer,
        responses=MemoryBlockSerializer,
    )
    def patch(self, request: Request, label: str) -> Response:
        return self.update_block(request, self.get_block())

    @extend_schema(
        summary="Delete an organisation-wide block (its history keeps every version)",
        parameters=[_DELETE_REASON],
        responses={204: None},
    )
    def delete(self, request: Request, label: str) -> Response:
        return _block_delete(request, self.get_block())


def _first_or_404(rows: QuerySet[MemoryBlock]) -> MemoryBlock:
    block = rows.first()
    if block is None:
        raise Http404("No such memory block")
    return block


class PassageFilter(django_filters.FilterSet):
    tag = django_filters.CharFilter(field_name="tags", lookup_expr="contains", method="filter_tag")

    class Meta:
        model = ArchivalPassage
        fields: list[str] = []

    def filter_tag(self, queryset: QuerySet[ArchivalPassage], name: str, value: str) -> QuerySet[ArchivalPassage]:
        return queryset.filter(tags__contains=[value.lower()])


class PassageViewMixin(ApiView):
    def passages(self, customer: Customer, *, include_invalidated: bool) -> QuerySet[ArchivalPassage]:
        return passages_for(organization=self.organization, customer=customer, include_invalidated=include_invalidated)

    def get_passage(self) -> ArchivalPassage:
        """One door: the passage must belong to this customer of this organisation."""
        passages = self.passages(self.get_customer(), include_invalidated=True)
        try:
            return passages.get(pk=int(self.kwargs["passage_id"]))
        except (ArchivalPassage.DoesNotExist, ValueError):
            raise Http404("No such passage") from None


class PassageListView(PassageViewMixin):
    serializer_class = PassageSerializer
    filterset_class = PassageFilter
    queryset = ArchivalPassage.objects.none()

    def get_queryset(self) -> QuerySet[ArchivalPassage]:
        if self.schema_only:
            return ArchivalPassage.objects.none()
        include = self.request.query_params.get("include_invalidated", "").lower() in {"1", "true"}
        return self.passages(self.get_customer(), include_invalidated=include).order_by("-created_at", "-id")

    @extend_schema(
        summary="A customer's archival passages, newest first",
        parameters=[OpenApiParameter("include_invalidated", OpenApiTypes.BOOL, description="Superseded ones too.")],
        responses=PassageSerializer(many=True),
    )
    def get(self, request: Request, customer_id: int) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(PassageSerializer(page, many=True).data)

    @extend_schema(
        summary="Store a fact in archival memory (identical text is deduplicated: 200)",
        request=PassageCreateSerializer,
        responses={200: PassageSerializer, 201: PassageSerializer},
    )
    def post(self, request: Request, customer_id: int) -> Response:
        customer = self.get_customer()
        data = PassageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        passage, created = passage_insert(
            organization=self.organization,
            customer=customer,
            provenance=_api_provenance(request),
            **data.validated_data,
        )
        return Response(PassageSerializer(passage).data, status=201 if created else 200)


class PassageSearchView(ApiView):
    @extend_schema(
        summary="Search a customer's archival memory",
        parameters=[PassageSearchQuerySerializer],
        responses=PassageSearchResultSerializer,
    )
    def get(self, request: Request, customer_id: int) -> Response:
        customer = self.get_customer()
        query = PassageSearchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = dict(query.validated_data)
        result = passage_search(organization=self.organization, customer=customer, query=params.pop("q"), **params)
        body = {**result.__dict__, "has_next": result.has_next}
        return Response(PassageSearchResultSerializer(body).data)


class PassageDetailView(PassageViewMixin):
    @extend_schema(summary="One archival passage (superseded ones included)", responses=PassageSerializer)
    def get(self, request: Request, customer_id: int, passage_id: int) -> Response:
        return Response(PassageSerializer(self.get_passage()).data)

    @extend_schema(summary="Delete a passage for good (prefer supersede for facts that changed)", responses={204: None})
    def delete(self, request: Request, customer_id: int, passage_id: int) -> Response:
        passage_delete(passage=self.get_passage())
        return Response(status=204)


class PassageSupersedeView(PassageViewMixin):
    @extend_schema(
        summary="Replace a fact with a newer one; the old passage stays, invalidated, linked to its successor",
        request=PassageSupersedeSerializer,
        responses={201: PassageSerializer},
    )
    def post(self, request: Request, customer_id: int, passage_id: int) -> Response:
        passage = self.get_passage()
        data = PassageSupersedeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        successor = passage_supersede(
            passage=passage,
            new_text=data.validated_data["text"],
            tags=data.validated_data.get("tags"),
            provenance=_api_provenance(request),
        )
        return Response(PassageSerializer(successor).data, status=201)


class MessageSearchView(ApiView):
    @extend_schema(
        summary="Search the organisation's messages (every channel, internal notes included: API clients are staff)",
        parameters=[MessageSearchQuerySerializer],
        responses=MessageSearchResultSerializer,
    )
    def get(self, request: Request) -> Response:
        query = MessageSearchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = dict(query.validated_data)
        customer_id, text = params.pop("customer_id"), params.pop("q")
        if customer_id is not None:
            customer = customer_get(organization=self.organization, customer_id=customer_id)
            result = message_search(customer=customer, query=text, **params)
        else:
            result = message_search_organization(organization=self.organization, query=text, **params)
        body = {**result.__dict__, "has_next": result.has_next}
        return Response(MessageSearchResultSerializer(body).data)
