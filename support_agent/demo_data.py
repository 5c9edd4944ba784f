"""The demo organisation's customers and their ticket history (written for supportmem; all fictional).

Each ticket: (days ago opened, subject, status, priority, channel, tags, messages); each message:
(hours after opening, role, body). Roles: customer, staff.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import cast

DemoMessage = tuple[float, str, str]
DemoTicket = tuple[int, str, str, str, str, list[str], list[DemoMessage]]
DemoCustomer = dict[str, object]

DEMO_ORGANIZATION = {"name": "Northwind Cloud (demo)", "slug": "demo"}

DEMO_STAFF = {"username": "demo", "password": "supportmem-demo", "email": "staff@northwind.example"}

DEMO_POLICIES = (
    "Refunds: full refund within 30 days of a charge; after that, account credit only.\n"
    "Outages: credit 10% of the monthly fee per started hour of confirmed downtime.\n"
    "Never promise a ship date for a feature. Escalate security reports to the security team at once."
)
DEMO_PERSONA = (
    "You are Nia, Northwind Cloud's support assistant. Warm, brief, precise. You remember each customer's "
    "history and never make them repeat themselves."
)

DEMO_CUSTOMERS: list[DemoCustomer] = [
    {
        "name": "Dana Whitfield",
        "email": "dana.whitfield@example.com",
        "identities": [("zendesk", "zd-90412"), ("intercom", "ic-5f2a9")],
        "metadata": {"plan": "Business", "company": "Whitfield Bakery"},
        "blocks": {
            "customer": "Dana Whitfield, owner of Whitfield Bakery. Business plan since March. Uses the "
            "Northwind POS sync and the online store plug-in.",
            "preferences": "Prefers email over phone. Short answers with numbered steps.",
        },
        "tickets": [
            (
                170,
                "Card reader stopped syncing with the POS",
                "solved",
                "high",
                "email",
                ["pos", "hardware"],
                [
                    (
                        0,
                        "customer",
                        "Since this morning the card reader shows 'sync pending' and nothing reaches "
                        "the dashboard. Saturday is our busiest day, please help.",
                    ),
                    (
                        1.5,
                        "staff",
                        "Sorry about the timing, Dana. Could you tell me the reader's firmware "
                        "version (Settings > About)?",
                    ),
                    (2, "customer", "It says 4.2.1."),
                    (
                        3,
                        "staff",
                        "4.2.1 has a known sync bug. Please update to 4.2.3: Settings > Update, keep it "
                        "plugged in for 5 minutes.",
                    ),
                    (26, "customer", "Updated and everything synced, including yesterday's sales. Thanks!"),
                ],
            ),
            (
                120,
                "Charged twice for the March invoice",
                "solved",
                "normal",
                "email",
                ["billing", "refund"],
                [
                    (
                        0,
                        "customer",
                        "My card was charged twice for invoice INV-2291 (89 USD each). Order A-10442 on my side.",
                    ),
                    (
                        4,
                        "staff",
                        "You're right, the retry job charged a card that had already paid. I've "
                        "refunded the duplicate 89 USD; it shows within 5 business days.",
                    ),
                    (100, "customer", "Refund arrived. Appreciated."),
                ],
            ),
            (
                20,
                "Online store plug-in shows wrong stock levels",
                "open",
                "normal",
                "chat",
                ["store", "inventory"],
                [
                    (
                        0,
                        "customer",
                        "The online store says we have 40 sourdough loaves when the POS says 12. "
                        "Customers are ordering bread we don't have.",
                    ),
                    (
                        0.5,
                        "staff",
                        "Which plug-in version is installed? And is inventory sync set to 'real time' or 'hourly'?",
                    ),
                    (
                        1,
                        "customer",
                        "Version 2.8, hourly. I'd rather not switch to real time, it slowed the site last year.",
                    ),
                ],
            ),
        ],
    },
    {
        "name": "Marcus Oyelaran",
        "email": "marcus@oyelaran-design.example",
        "identities": [("helpscout", "hs-33107")],
        "metadata": {"plan": "Starter", "company": "Oyelaran Design"},
        "blocks": {
            "customer": "Marcus Oyelaran, freelance designer. Starter plan. Works from Lagos and Lisbon.",
        },
        "tickets": [
            (
                200,
                "Can't log in after changing my phone",
                "solved",
                "urgent",
                "email",
                ["login", "2fa"],
                [
                    (
                        0,
                        "customer",
                        "New phone, the authenticator app is empty and I'm locked out. I have a "
                        "client presentation in two hours!!",
                    ),
                    (
                        0.3,
                        "staff",
                        "Let's get you in. I've sent a one-time recovery link to "
                        "marcus@oyelaran-design.example; after logging in, re-enrol 2FA under Security.",
                    ),
                    (0.6, "customer", "In. You saved my afternoon."),
                ],
            ),
            (
                95,
                "Exported PDFs lose their fonts",
                "solved",
                "normal",
                "email",
                ["export", "pdf"],
                [
                    (0, "customer", "When I export a proposal to PDF, my custom font (Sora) is replaced by Helvetica."),
                    (
                        6,
                        "staff",
                        "Custom fonts need 'embed fonts' enabled in Export settings. It's off by "
                        "default on Starter workspaces.",
                    ),
                    (30, "customer", "That was it. Maybe make it the default? Designers will all hit this."),
                ],
            ),
            (
                12,
                "Invoice in euros instead of naira",
                "pending",
                "low",
                "email",
                ["billing", "currency"],
                [
                    (
                        0,
                        "customer",
                        "Since I moved my billing address to Lisbon my invoices are in EUR. Could "
                        "they stay in NGN? My accountant is in Lagos.",
                    ),
                    (
                        20,
                        "staff",
                        "Billing currency follows the billing address. I've asked the billing "
                        "team whether an exception is possible and will get back to you.",
                    ),
                ],
            ),
        ],
    },
    {
        "name": "Priya Raman",
        "email": "priya.raman@lumen-health.example",
        "identities": [("front", "fr-cnv-7781"), ("email", "priya.raman@lumen-health.example")],
        "metadata": {"plan": "Enterprise", "company": "Lumen Health", "seats": 240},
        "blocks": {
            "customer": "Priya Raman, IT lead at Lumen Health (Enterprise, 240 seats). Handles SSO and "
            "compliance questions.",
            "preferences": "Wants ticket references in every reply. Formal tone.",
        },
        "tickets": [
            (
                150,
                "SAML SSO fails for users in the Finance group",
                "solved",
                "high",
                "email",
                ["sso", "saml"],
                [
                    (
                        0,
                        "customer",
                        "Users in our Finance group get 'NameID missing' on login via Okta. Everyone else is fine.",
                    ),
                    (
                        5,
                        "staff",
                        "The Finance group's Okta app assignment uses a different profile without "
                        "the email attribute. Map NameID to user.email for that assignment.",
                    ),
                    (28, "customer", "Confirmed fixed after remapping. Please note this for our account."),
                ],
            ),
            (
                60,
                "Request for our data processing agreement",
                "solved",
                "normal",
                "email",
                ["compliance", "dpa"],
                [
                    (0, "customer", "Our auditors need the signed DPA and the list of sub-processors by Friday."),
                    (
                        3,
                        "staff",
                        "Attached: DPA v3 countersigned, and the current sub-processor list. Reference DPA-LUMEN-2026.",
                    ),
                    (4, "customer", "Received, thank you."),
                ],
            ),
            (
                5,
                "Audit log export times out",
                "open",
                "high",
                "email",
                ["audit-log", "export"],
                [
                    (
                        0,
                        "customer",
                        "Exporting 90 days of audit logs fails with a timeout after 60 seconds. "
                        "We need this for the quarterly review.",
                    ),
                ],
            ),
        ],
    },
    {
        "name": "Tomás Ferreira",
        "email": "tomas@ferreira-bikes.example",
        "identities": [("freshdesk", "fd-4410"), ("widget", "user-ferreira")],
        "metadata": {"plan": "Business", "company": "Ferreira Bikes"},
        "blocks": {},
        "tickets": [
            (
                80,
                "Webhook to our ERP stopped firing",
                "solved",
                "high",
                "web",
                ["webhooks", "integration"],
                [
                    (
                        0,
                        "customer",
                        "Order webhooks to our ERP stopped yesterday around 14:00. Nothing changed on our side.",
                    ),
                    (
                        2,
                        "staff",
                        "Your endpoint's TLS certificate expired yesterday at 14:02, so our "
                        "deliveries fail verification. Renew it and we'll replay the failed events.",
                    ),
                    (5, "customer", "Renewed. Please replay."),
                    (6, "staff", "Replayed 312 events, all delivered."),
                ],
            ),
            (
                30,
                "Cancel the extra seat we added by mistake",
                "solved",
                "low",
                "chat",
                ["billing", "seats"],
                [
                    (0, "customer", "Hola! We added a 6th seat by mistake last week, can you remove it and refund it?"),
                    (0.2, "staff", "Done: seat removed and 18 USD refunded to the card on file."),
                ],
            ),
        ],
    },
]


def demo_history_ndjson(now: datetime) -> list[str]:
    """The demo customers' tickets as lines of a history import file (docs/import.md): the demo history, as a
    helpdesk export would hand it over."""
    lines = []
    for data in DEMO_CUSTOMERS:
        identities = cast(list[tuple[str, str]], data["identities"])
        for number, (days_ago, subject, status, priority, channel, tags, messages) in enumerate(
            cast(list[DemoTicket], data["tickets"]), start=1
        ):
            opened = now - timedelta(days=days_ago)
            ticket = {
                "id": f"{identities[0][1]}-{number}",
                "subject": subject,
                "status": status,
                "priority": priority,
                "channel": channel,
                "tags": tags,
                "created_at": opened.isoformat(),
                "updated_at": (opened + timedelta(hours=messages[-1][0])).isoformat(),
                "customer": {"id": identities[0][1], "name": data["name"], "email": data["email"]},
                "messages": [
                    {
                        "id": str(index),
                        "author": role,
                        "author_name": str(data["name"]) if role == "customer" else "Northwind support",
                        "body": body,
                        "created_at": (opened + timedelta(hours=hours)).isoformat(),
                    }
                    for index, (hours, role, body) in enumerate(messages, start=1)
                ],
            }
            lines.append(json.dumps(ticket, ensure_ascii=False))
    return lines
