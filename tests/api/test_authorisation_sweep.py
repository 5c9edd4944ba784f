"""Every endpoint, swept: another organisation's ids and another customer's widget token get 404, no
credentials get 401, a wrong user_hash gets 401. The table must cover every operation in the schema."""

from __future__ import annotations

from typing import Any

from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from memory.models import ArchivalPassage, MemoryBlock
from memory.services import Provenance, blocks_ensure, passage_insert
from support_agent.merge import customer_merge
from support_agent.models import AgentRun
from tests.api.helpers import assert_error, widget_session
from tickets.auth import user_hash_for
from tickets.models import Customer

# (method, path template) -> a valid body. Every id in the path is the first organisation's.
SERVER_OPERATIONS: dict[tuple[str, str], Any] = {
    ("GET", "/api/customers/{customer_id}/"): None,
    ("GET", "/api/customers/{customer_id}/tickets/"): None,
    ("POST", "/api/customers/{customer_id}/tickets/"): {"subject": "Sweep"},
    ("GET", "/api/customers/{customer_id}/tickets/{ticket_id}/"): None,
    ("GET", "/api/customers/{customer_id}/messages/"): None,
    ("POST", "/api/customers/{customer_id}/messages/"): {"body": "Sweep"},
    ("GET", "/api/customers/{customer_id}/memory/"): None,
    ("POST", "/api/customers/{customer_id}/memory/"): {"label": "sweep"},
    ("GET", "/api/customers/{customer_id}/memory/{label}/"): None,
    ("DELETE", "/api/customers/{customer_id}/memory/{label}/"): None,
    ("PATCH", "/api/customers/{customer_id}/memory/{label}/"): {"value": "Sweep", "reason": "r", "version": 1},
    ("GET", "/api/customers/{customer_id}/passages/"): None,
    ("POST", "/api/customers/{customer_id}/passages/"): {"text": "Sweep"},
    ("GET", "/api/customers/{customer_id}/passages/search/"): None,
    ("GET", "/api/customers/{customer_id}/passages/{passage_id}/"): None,
    ("DELETE", "/api/customers/{customer_id}/passages/{passage_id}/"): None,
    ("POST", "/api/customers/{customer_id}/passages/{passage_id}/supersede/"): {"text": "Sweep"},
    ("GET", "/api/customers/{customer_id}/context/"): None,
    ("POST", "/api/customers/{customer_id}/turns/"): {"message": "Sweep"},
    ("GET", "/api/customers/{customer_id}/runs/"): None,
    ("GET", "/api/customers/{customer_id}/runs/{run_id}/"): None,
    ("GET", "/api/customers/{customer_id}/export/"): None,
    ("POST", "/api/customers/{customer_id}/erase/"): None,
    ("POST", "/api/customers/{customer_id}/merge/"): {"into": 1},
    ("POST", "/api/customers/{customer_id}/merges/{merge_id}/undo/"): None,
}
# Organisation-level operations carry no id: another organisation's key sees its own rows instead.
ORGANIZATION_OPERATIONS: dict[tuple[str, str], Any] = {
    ("GET", "/api/customers/"): None,
    ("POST", "/api/customers/"): {"external_id": "sweep-1"},
    ("GET", "/api/messages/search/"): None,
    ("GET", "/api/memory/"): None,
    ("POST", "/api/memory/"): {"label": "sweep"},
    ("GET", "/api/memory/{label}/"): None,
    ("DELETE", "/api/memory/{label}/"): None,
    ("PATCH", "/api/memory/{label}/"): {"value": "Sweep", "reason": "r", "version": 1},
}
WIDGET_OPERATIONS: dict[tuple[str, str], Any] = {
    ("GET", "/api/widget/{publishable_key}/messages/"): None,
    ("POST", "/api/widget/{publishable_key}/messages/"): {"body": "Sweep"},
    ("GET", "/api/widget/{publishable_key}/runs/{run_id}/"): None,
}
SESSION_OPERATION = ("POST", "/api/widget/{publishable_key}/session/")


def _schema_operations() -> set[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {(method.upper(), path) for path, item in schema["paths"].items() for method in item}


def _call(client: APIClient, method: str, path: str, body: Any) -> Any:
    return (
        getattr(client, method.lower())(path, body, format="json")
        if body is not None
        else getattr(client, method.lower())(path)
    )


def _fixture_ids(actors) -> dict[str, Any]:
    blocks_ensure(customer=actors.customer)
    blocks_ensure(customer=actors.stranger)
    passage, _ = passage_insert(
        organization=actors.org, customer=actors.customer, text="Dana likes numbered steps.", provenance=Provenance()
    )
    run = AgentRun.objects.create(organization=actors.org, customer=actors.customer, trigger="api", status="completed")
    duplicate = Customer.objects.create(organization=actors.org, name="Dana W. (duplicate)")
    merge = customer_merge(source=duplicate, into=actors.customer, user=None, via="api")
    return {
        "customer_id": actors.customer.pk,
        "ticket_id": actors.solved_ticket.pk,
        "label": "preferences",
        "passage_id": passage.pk,
        "run_id": run.pk,
        "merge_id": merge.pk,
        "publishable_key": actors.org.widget_publishable_key,
    }


def test_the_sweep_covers_every_operation(actors):
    covered = {*SERVER_OPERATIONS, *ORGANIZATION_OPERATIONS, *WIDGET_OPERATIONS, SESSION_OPERATION}
    assert _schema_operations() == covered


def test_another_organisations_key_gets_404_and_changes_nothing(actors, other_api):
    ids = _fixture_ids(actors)
    for (method, template), body in SERVER_OPERATIONS.items():
        path = template.format(**ids)
        assert_error(_call(other_api, method, path, body), 404)
    assert Customer.objects.filter(pk=actors.customer.pk).exists()
    assert ArchivalPassage.objects.filter(pk=ids["passage_id"], invalidated_at__isnull=True).exists()
    assert MemoryBlock.objects.get(customer=actors.customer, label="preferences").value == ""
    assert not AgentRun.objects.exclude(pk=ids["run_id"]).exists()

    listed = other_api.get("/api/customers/").json()["results"]
    assert [c["id"] for c in listed] == [actors.stranger.pk]
    org_block = other_api.get("/api/memory/persona/").json()
    assert org_block["id"] != MemoryBlock.objects.get(organization=actors.org, label="persona", customer=None).pk


def test_no_credentials_get_401_everywhere(actors):
    ids = _fixture_ids(actors)
    anonymous = APIClient()
    everything = {**SERVER_OPERATIONS, **ORGANIZATION_OPERATIONS, **WIDGET_OPERATIONS}
    for (method, template), body in everything.items():
        path = template.format(**{**ids, "label": "persona"} if template.startswith("/api/memory/") else ids)
        response = _call(anonymous, method, path, body)
        assert_error(response, 401)
        assert response["WWW-Authenticate"], (method, path)


def test_another_customers_widget_token_gets_404(actors):
    ids = _fixture_ids(actors)
    # Lee's verified session must not reach Dana's run; Dana's run id is the only id in the widget API.
    lee_token = widget_session(APIClient(), actors.org, "lee-widget")
    lee = APIClient()
    lee.credentials(HTTP_AUTHORIZATION=f"Bearer {lee_token}")
    assert_error(lee.get(f"/api/widget/{ids['publishable_key']}/runs/{ids['run_id']}/"), 404)
    assert all(
        m["body"] != "Dana likes numbered steps."
        for m in lee.get(f"/api/widget/{ids['publishable_key']}/messages/").json()
    )

    # A token of another organisation's visitor, on this organisation's widget URLs: 404 on every operation.
    stranger_token = widget_session(APIClient(), actors.other_org, "stranger-widget")
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION=f"Bearer {stranger_token}")
    for (method, template), body in WIDGET_OPERATIONS.items():
        assert_error(_call(stranger, method, template.format(**ids), body), 404)
    # A server API key is not a widget token.
    api_client = APIClient()
    from tickets.auth import api_key_create

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(organization=actors.org)[1]}")
    assert_error(api_client.get(f"/api/widget/{ids['publishable_key']}/messages/"), 401)


def test_wrong_user_hash_gets_401(actors):
    key = actors.org.widget_publishable_key
    client = APIClient()
    for user_hash in [
        user_hash_for(organization=actors.org, user_id="someone-else"),
        user_hash_for(organization=actors.other_org, user_id="zd-1"),
        "0" * 64,
    ]:
        response = client.post(
            f"/api/widget/{key}/session/", {"user_id": "zd-1", "user_hash": user_hash}, format="json"
        )
        assert_error(response, 401, "invalid_user_hash")
