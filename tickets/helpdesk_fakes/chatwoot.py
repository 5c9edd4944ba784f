"""A loopback fake of Chatwoot's Application API for history reads: the paged conversation list and each
conversation's messages read backwards with ``before``, in the shapes Chatwoot's views render (see
``tickets.helpdesks.chatwoot``), and the ``message_created`` webhook the same message would have sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tickets.helpdesk_fakes.common import AGENT_EMAIL, AGENT_ID, AGENT_NAME, Answer, FakeHelpdesk, iso

_SORTS = {
    "created_at_asc": (lambda c: c["created_at"], False),
    "created_at_desc": (lambda c: c["created_at"], True),
    "last_activity_at_asc": (lambda c: c["last_activity_at"], False),
    "last_activity_at_desc": (lambda c: c["last_activity_at"], True),
}


@dataclass
class FakeChatwoot(FakeHelpdesk):
    """A Chatwoot account (``account_id``) with one email inbox. Conversation ``n`` has display id ``n``; contacts
    are ``1_000_000 + customer number``; message j of conversation n is ``n * 1000 + j``. Every resolved
    conversation ends with an activity line ("… marked resolved"), and every fifth has a message deleted after
    the last one, as Chatwoot keeps them (placeholder text, ``content_attributes.deleted``).

    ``per_page`` is the install's CONVERSATION_RESULTS_PER_PAGE (25 by default), ``messages_page`` is
    MessageFinder's 20; ``rack_attack`` answers 429s as rack-attack does by default (no Retry-After)."""

    account_id: int = 7
    token: str = "cw-access-token"
    per_page: int = 25
    messages_page: int = 20
    rack_attack: bool = False

    def contact_id(self, n: int) -> int:
        return 1_000_000 + self.customer_number(n)

    def message_id(self, n: int, j: int) -> int:
        return n * 1000 + j

    def status(self, n: int) -> str:
        return "resolved" if self.solved(n) else "open"

    # ------------------------------------------------------------ shapes

    def contact_json(self, n: int) -> dict[str, Any]:
        number = self.customer_number(n)
        return {
            "additional_attributes": {},
            "custom_attributes": {},
            "email": self.customer_email(number),
            "id": self.contact_id(n),
            "identifier": None,
            "name": self.customer_name(number),
            "phone_number": None,
            "thumbnail": "",
            "blocked": False,
            "type": "contact",
        }

    def agent_json(self) -> dict[str, Any]:
        return {
            "id": AGENT_ID,
            "name": AGENT_NAME,
            "available_name": AGENT_NAME,
            "avatar_url": "",
            "type": "user",
            "availability_status": "online",
            "thumbnail": "",
        }

    def raw_messages(self, n: int) -> list[dict[str, Any]]:
        """Every message row of conversation n, in id order, as the messages endpoint renders them."""
        rows = []
        for j in range(self.comments):
            customer = self.by_customer(j)
            rows.append(
                self._message_row(
                    n,
                    self.message_id(n, j),
                    self.comment_body(n, j),
                    0 if customer else 1,
                    int(self.message_time(n, j).timestamp()),
                    private=self.is_note(j),
                    sender=self.contact_json(n) if customer else self.agent_json(),
                )
            )
        end = int(self.updated(n).timestamp())
        if n % 5 == 0:
            deleted = self._message_row(n, self.message_id(n, self.comments), "This message was deleted", 0, end)
            deleted["content_attributes"] = {"deleted": True}
            deleted["sender"] = self.contact_json(n)
            rows.append(deleted)
        if self.solved(n):
            activity = f"Conversation was marked resolved by {AGENT_NAME}"
            rows.append(self._message_row(n, self.message_id(n, self.comments + 1), activity, 2, end))
        return rows

    def _message_row(
        self,
        n: int,
        message_id: int,
        content: str,
        message_type: int,
        created: int,
        *,
        private: bool = False,
        sender: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": message_id,
            "content": content,
            "inbox_id": 3,
            "conversation_id": n,
            "message_type": message_type,
            "content_type": "text",
            "status": "sent",
            "content_attributes": {},
            "created_at": created,
            "private": private,
            "source_id": None,
        }
        if sender is not None:
            row["sender"] = sender
        return row

    def conversation_json(self, n: int) -> dict[str, Any]:
        """A conversation as the list renders it (api/v1/conversations/partials/_conversation)."""
        created = int(self.created(n).timestamp())
        updated = int(self.updated(n).timestamp())
        last = [m for m in self.raw_messages(n) if m["message_type"] in (0, 1)][-1]
        return {
            "meta": {
                "sender": self.contact_json(n),
                "channel": "Channel::Email",
                "assignee": {"id": AGENT_ID, "name": AGENT_NAME, "email": AGENT_EMAIL, "role": "agent"},
                "hmac_verified": False,
            },
            "id": n,
            "messages": [self.raw_messages(n)[-1]],
            "account_id": self.account_id,
            "uuid": f"00000000-0000-4000-8000-{n:012d}",
            "additional_attributes": {"mail_subject": self.subject(n), "source": "email"},
            "agent_last_seen_at": updated,
            "assignee_last_seen_at": updated,
            "can_reply": True,
            "contact_last_seen_at": 0,
            "custom_attributes": {},
            "inbox_id": 3,
            "labels": ["imported", f"topic{n % 6}"],
            "muted": False,
            "snoozed_until": None,
            "status": self.status(n),
            "created_at": created,
            "updated_at": updated + 0.5,
            "timestamp": updated,
            "first_reply_created_at": int(self.message_time(n, 1).timestamp()) if self.comments > 1 else 0,
            "unread_count": 0,
            "last_non_activity_message": last,
            "last_activity_at": updated,
            "priority": None,
            "waiting_since": 0,
            "sla_policy_id": None,
        }

    def webhook_message_created(self, n: int, j: int) -> tuple[dict[str, str], dict[str, Any]]:
        """The ``message_created`` webhook Chatwoot sends for message j of conversation n (Message#webhook_data:
        the message word-typed, ISO time, its conversation's push data)."""
        row = next(m for m in self.raw_messages(n) if m["id"] == self.message_id(n, j))
        conversation = self.conversation_json(n)
        conversation_push = {
            key: conversation[key]
            for key in ("additional_attributes", "can_reply", "id", "inbox_id", "labels", "meta", "status")
        } | {
            "channel": "Channel::Email",
            "messages": [],
            "created_at": conversation["created_at"],
            "timestamp": row["created_at"],
            "updated_at": row["created_at"],
            "last_activity_at": row["created_at"],
        }
        payload = {
            "event": "message_created",
            "id": row["id"],
            "content": row["content"],
            "content_type": "text",
            "content_attributes": {},
            "additional_attributes": {},
            "created_at": iso(self.message_time(n, j)),
            "message_type": "incoming" if row["message_type"] == 0 else "outgoing",
            "private": row["private"],
            "source_id": None,
            "sender": row["sender"],
            "conversation": conversation_push,
            "account": {"id": self.account_id, "name": "Example"},
            "inbox": {"id": 3, "name": "Support email"},
        }
        return {"x-chatwoot-delivery": f"cw-delivery-{n}-{j}"}, payload

    # ------------------------------------------------------------ HTTP

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("api_access_token") == self.token

    def unauthorized(self) -> Answer:
        return 401, {"error": "Invalid Access Token"}, {}

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Answer:
        result = super().answer(method, target, headers, body)
        if self.rack_attack and result is not None and result[0] == 429:
            return 429, "Retry later\n", {}  # rack-attack's default throttled response: no Retry-After
        return result

    def route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        prefix = f"/api/v1/accounts/{self.account_id}/conversations"
        if not path.startswith(prefix):
            return 404, {"error": "Resource could not be found"}, {}
        rest = path[len(prefix) :].strip("/").split("/")
        if rest == [""]:
            return 200, self._list(query), {}
        if len(rest) == 2 and rest[1] == "messages" and rest[0].isdigit():
            n = int(rest[0])
            if not 1 <= n <= self.tickets:
                return 404, {"error": "Resource could not be found"}, {}
            return 200, self._messages(n, query), {}
        return 404, {"error": "Resource could not be found"}, {}

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        conversations = [self.conversation_json(n) for n in range(1, self.tickets + 1)]
        status = query.get("status", "open")  # ConversationFinder's default
        if status != "all":
            conversations = [c for c in conversations if c["status"] == status]
        key, reverse = _SORTS.get(query.get("sort_by", ""), _SORTS["last_activity_at_desc"])
        conversations.sort(key=key, reverse=reverse)
        page = max(1, int(query.get("page", 1)))
        chunk = conversations[(page - 1) * self.per_page : page * self.per_page]
        unassigned = 0
        return {
            "data": {
                "meta": {
                    "mine_count": 0,
                    "assigned_count": len(conversations) - unassigned,
                    "unassigned_count": unassigned,
                    "all_count": len(conversations),
                },
                "payload": chunk,
            }
        }

    def _messages(self, n: int, query: dict[str, str]) -> dict[str, Any]:
        rows = self.raw_messages(n)
        if "before" in query:
            rows = [m for m in rows if m["id"] < int(query["before"])]
        window = rows[-self.messages_page :]  # the latest of them, oldest first
        return {
            "meta": {
                "labels": ["imported"],
                "additional_attributes": {"mail_subject": self.subject(n)},
                "contact": self.contact_json(n),
                "assignee": self.agent_json(),
                "agent_last_seen_at": int(self.updated(n).timestamp()),
            },
            "payload": window,
        }
