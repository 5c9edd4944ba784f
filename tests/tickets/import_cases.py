"""The seven helpdesk vendors as the shared import checks know them (``import_harness.ImportCase``): how to
connect an integration to each loopback fake, how its ids look, what webhook it sends for one message.
test_import_vendors.py runs the shared checks over all of them; each vendor's own module adds what only that
vendor does."""

from __future__ import annotations

from typing import Any

from tests.tickets.import_harness import ImportCase
from tickets.helpdesk_fakes.chatwoot import FakeChatwoot
from tickets.helpdesk_fakes.freshdesk import FakeFreshdesk
from tickets.helpdesk_fakes.front import FakeFront
from tickets.helpdesk_fakes.helpscout import FakeHelpScout
from tickets.helpdesk_fakes.intercom import FakeIntercom
from tickets.helpdesk_fakes.zammad import FakeZammad
from tickets.helpdesk_fakes.zendesk import FakeZendesk
from tickets.helpdesks.base import digest_id
from tickets.helpdesks.chatwoot import ChatwootReader
from tickets.helpdesks.freshdesk import FreshdeskReader
from tickets.helpdesks.front import FrontReader
from tickets.helpdesks.helpscout import HelpScoutReader
from tickets.helpdesks.intercom import IntercomReader
from tickets.helpdesks.zammad import ZammadReader
from tickets.helpdesks.zendesk import ZendeskReader

# ---------------------------------------------------------------- Chatwoot

CHATWOOT_CREDENTIALS = {"api_access_token": "cw-access-token", "account_id": "7"}

CHATWOOT = ImportCase(
    kind="chatwoot",
    # Ten conversations a page (the install's CONVERSATION_RESULTS_PER_PAGE), so a few tickets make several pages.
    fake=lambda **options: FakeChatwoot(per_page=10, **options),
    integration_fields=lambda fake: {"outbound_base_url": fake.url, "outbound_credentials": CHATWOOT_CREDENTIALS},
    reader=lambda integration, size: ChatwootReader(integration),
    ticket_id=str,
    message_id=lambda n, j: str(n * 1000 + j),
    customer_id=lambda fake, n: str(fake.contact_id(n)),
    webhook=lambda fake, n, j: fake.webhook_message_created(n, j),
    list_path="/conversations?",
    message_path=lambda n: f"/conversations/{n}/messages",
)

# ---------------------------------------------------------------- Freshdesk


def freshdesk_fake(**options: Any) -> FakeFreshdesk:
    return FakeFreshdesk(conversations_page_max=2, **options)


_FRESHDESK_TEXTS = FakeFreshdesk()

FRESHDESK = ImportCase(
    kind="freshdesk",
    fake=freshdesk_fake,
    integration_fields=lambda fake: {"outbound_credentials": {"api_key": fake.api_key, "domain": fake.url}},
    reader=lambda integration, size: FreshdeskReader(integration, per_page=size),
    ticket_id=str,
    # A reply's id is a digest of its text (as the webhook parser's is).
    message_id=lambda n, j: "description" if j == 0 else digest_id("comment-", _FRESHDESK_TEXTS.comment_body(n, j)),
    customer_id=lambda fake, n: fake.customer_email(fake.customer_number(n)),
    webhook=lambda fake, n, j: ({}, fake.webhook_comment_event(n, j)),
    list_path="/api/v2/tickets?",
    message_path=lambda n: f"tickets/{n}/conversations",
)

# ---------------------------------------------------------------- Front

FRONT_CREDENTIALS = {"api_token": "front-api-token"}
_FRONT_IDS = FakeFront(comments=5)  # the checks' tickets have 4 or 5 messages: the note is j=3

FRONT = ImportCase(
    kind="front",
    fake=FakeFront,
    integration_fields=lambda fake: {"outbound_base_url": fake.url, "outbound_credentials": FRONT_CREDENTIALS},
    reader=lambda integration, size: FrontReader(integration, limit=size),
    ticket_id=lambda n: f"cnv_{n:06x}",
    message_id=_FRONT_IDS.message_id,
    customer_id=lambda fake, n: fake.contact_id(fake.customer_number(n)),
    webhook=lambda fake, n, j: ({}, fake.webhook_event(n, j)),
    list_path="/conversations?",
    message_path=lambda n: f"conversations/cnv_{n:06x}/messages",
)

# ---------------------------------------------------------------- Help Scout

HELPSCOUT_CREDENTIALS = {"client_id": "app-client-id", "client_secret": "app-client-secret"}


def helpscout_fake(**options: Any) -> FakeHelpScout:
    return FakeHelpScout(per_page=5, threads_per_page=2, **options)


HELPSCOUT = ImportCase(
    kind="helpscout",
    vendor="Help Scout",
    fake=helpscout_fake,
    integration_fields=lambda fake: {"outbound_base_url": fake.url, "outbound_credentials": HELPSCOUT_CREDENTIALS},
    reader=lambda integration, size: HelpScoutReader(integration),
    ticket_id=lambda n: str(4_400_000 + n),
    message_id=lambda n, j: str((4_400_000 + n) * 100 + j),
    customer_id=lambda fake, n: str(fake.customer_id(n)),
    webhook=lambda fake, n, j: fake.webhook_comment_event(n, j),
    list_path="/v2/conversations?",
    message_path=lambda n: f"conversations/{4_400_000 + n}/threads",
)

# ---------------------------------------------------------------- Intercom

INTERCOM_CREDENTIALS = {"access_token": "intercom-access-token", "admin_id": "9000001"}

INTERCOM = ImportCase(
    kind="intercom",
    fake=FakeIntercom,
    integration_fields=lambda fake: {"outbound_base_url": fake.url, "outbound_credentials": INTERCOM_CREDENTIALS},
    reader=lambda integration, size: IntercomReader(integration, per_page=size),
    ticket_id=lambda n: str(1_000_000_000 + n),
    message_id=lambda n, j: str(2_000_000_000 + n) if j == 0 else str(5_000_000_000 + n * 1000 + j),
    customer_id=lambda fake, n: fake.contact_id(fake.customer_number(n)),
    webhook=lambda fake, n, j: ({}, fake.webhook_event(n, j)),
    list_path="conversations/search",
    message_path=lambda n: f"conversations/{1_000_000_000 + n}",
)

# ---------------------------------------------------------------- Zammad

ZAMMAD_CREDENTIALS = {"api_token": "zammad-access-token"}

ZAMMAD = ImportCase(
    kind="zammad",
    fake=FakeZammad,
    integration_fields=lambda fake: {"outbound_base_url": fake.url, "outbound_credentials": ZAMMAD_CREDENTIALS},
    reader=lambda integration, size: ZammadReader(integration, per_page=size),
    ticket_id=str,
    message_id=lambda n, j: str(n * 1000 + j),
    customer_id=lambda fake, n: str(fake.customer_id(n)),
    webhook=lambda fake, n, j: fake.webhook_article_created(n, j),
    list_path="/api/v1/tickets?",
    message_path=lambda n: f"/by_ticket/{n}",
)

# ---------------------------------------------------------------- Zendesk

ZENDESK_CREDENTIALS = {"email": "admin@example.com", "api_token": "secret-token"}

ZENDESK = ImportCase(
    kind="zendesk",
    fake=FakeZendesk,
    integration_fields=lambda fake: {"outbound_base_url": fake.url, "outbound_credentials": ZENDESK_CREDENTIALS},
    reader=lambda integration, size: ZendeskReader(integration, per_page=size),
    ticket_id=str,
    message_id=lambda n, j: "description" if j == 0 else str(n * 1000 + j),
    customer_id=lambda fake, n: str(fake.requester_id(n)),
    webhook=lambda fake, n, j: ({}, fake.webhook_comment_event(n, j)),
    list_path="incremental",
    message_path=lambda n: f"tickets/{n}/comments",
)

CASES = [CHATWOOT, FRESHDESK, FRONT, HELPSCOUT, INTERCOM, ZAMMAD, ZENDESK]
