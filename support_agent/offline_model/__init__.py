"""The offline model: a deterministic, extractive stand-in for an LLM, used when no OPENAI_API_KEY/OPENAI_BASE_URL
is set.

It speaks the same tool protocol as a real model (tool calls with request_heartbeat, results read back on the
next step), so the whole pipeline runs on a machine with no network. It never invents anything: what it stores
is a phrase the customer stated, what it answers is a sentence it found. Step by step:

Customer message (the new event is "New message from the customer ... :\\n<body>")
  Step 1. The body is split into sentences; a sentence that asks something ("Can you remind me what my order
     number is?") is a question and is never a source of facts. Each statement is matched against a few fact
     patterns (name, employer, product, plan, seats, email, phone, city, address, order and account numbers,
     preferences, and more: see KINDS); a fact's value ends at its clause boundary (punctuation, "and", "but",
     "now"...). When the message answers a staff question (the staff message just before it in the context asks
     something: "Can I have your name and date of birth?"), the reply is also read for what was asked, in order.
     Core facts go to the ``customer`` or ``preferences`` block: appended when new, replaced
     (``core_memory_replace``) when the block holds the same kind of fact with another value and the fact is
     single-valued (a name, an employer) or the sentence says it changed ("now", "new", "changed to",
     "switched to", "moved to"). A ticket not yet in ``open_issues`` gets one line there. The model also
     searches recall memory (``conversation_search``) and archival memory (``archival_memory_search``) with
     the question's words, and lists archival facts of each kind it is about to store or is asked about.
  Step 2. Archival facts (orders, addresses, accounts): inserted, or, for a changed one, the current passage of
     that kind is superseded (``archival_memory_supersede``). Then ``send_message``: for each question, the one
     to three best pieces of evidence (core memory lines, archival passages, messages from the customer or
     staff; never its own earlier replies), each with its date and source, and "I found nothing about that"
     when nothing matches; for statements, what it noted. Then it stops.
Consolidation (the new event is "Ticket #N ... was solved")
  removes the ticket's line from ``open_issues`` with ``core_memory_replace`` if there is one, then stops.

Replies start with "(offline model)"; run.model_name and the reply's author are "offline model".

Modules: ``kinds`` (the kinds of fact and the phrasings that introduce them), ``extraction`` (reading a message:
``facts_in``), ``answering`` (evidence from tool results, scoring, the reply), ``backend`` (``OfflineBackend``, the
tool-calling steps). The names other code uses are importable from this package.
"""

from support_agent.offline_model.answering import _block_lines, _block_text, _Evidence, _score
from support_agent.offline_model.backend import OfflineBackend, _staff_question, _staff_told
from support_agent.offline_model.extraction import (
    facts_in,
    is_question,
    keywords,
    sentences,
)
from support_agent.offline_model.kinds import (
    KINDS,
    OFFLINE_NAME,
    REPLY_PREFIX,
    Fact,
    Kind,
    Trigger,
)

__all__ = [
    "KINDS",
    "OFFLINE_NAME",
    "REPLY_PREFIX",
    "Fact",
    "Kind",
    "OfflineBackend",
    "Trigger",
    "_Evidence",
    "_block_lines",
    "_block_text",
    "_score",
    "_staff_question",
    "_staff_told",
    "facts_in",
    "is_question",
    "keywords",
    "sentences",
]
