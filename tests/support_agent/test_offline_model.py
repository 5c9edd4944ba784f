"""The offline model: facts only from statements, cut at their clause, replaced when they change; replies that
answer with the evidence found (never its own replies) or say plainly that nothing was found."""

from __future__ import annotations

import json

from memory.models import ArchivalPassage, MemoryBlock
from support_agent.models import AgentRun
from support_agent.offline_model import OfflineBackend, facts_in, is_question, keywords
from support_agent.services import agent_run
from support_agent.tools import TOOLS
from tests.support_agent.helpers import customer_says
from tickets.models import Customer, TicketMessage

MESSAGE = (
    "Hi, my name is Dana Whitfield. I prefer email updates. I use the Verifone P400 card reader. "
    "My order number is A-10442. The card reader stopped syncing again."
)


def _turn(customer: Customer, text: str, ticket=None) -> AgentRun:
    run = agent_run(customer=customer, trigger="message", message=customer_says(customer, text, ticket))
    run.refresh_from_db()
    return run


def _values(customer: Customer) -> dict[str, str]:
    return {b.label: b.value for b in MemoryBlock.objects.filter(customer=customer)}


def _every_call_was_valid(run: AgentRun) -> None:
    """The offline model speaks the tool protocol: known tools, arguments that validate, every result ok."""
    for step in run.steps.all():
        for call in step.tool_calls:
            TOOLS[call["name"]].args.model_validate(json.loads(call["arguments"]))
        assert all(result["ok"] for result in step.tool_results), step.tool_results


def test_offline_run_records_facts_and_replies(actors, blocks, offline):
    events = []
    message = customer_says(actors.customer, MESSAGE, actors.open_ticket)
    run = agent_run(customer=actors.customer, trigger="message", message=message, on_event=events.append)
    run.refresh_from_db()
    assert (run.model_name, run.status, run.stop_reason, run.step_count) == (
        "offline model",
        "completed",
        "end_turn",
        2,
    )
    assert run.reply.startswith("(offline model) ") and run.reply.count("offline model") == 1
    assert "Order: A-10442" in run.reply
    # A problem report with no question: the staff answer to the same problem, solved before, is offered.
    assert "firmware to 4.2.3" in run.reply
    reply = TicketMessage.objects.get(pk=run.reply_message_id)
    assert (reply.author_role, reply.author_name, reply.ticket) == ("agent", "offline model", actors.open_ticket)
    values = _values(actors.customer)
    assert values["customer"] == "Name: Dana Whitfield\nUses the Verifone P400 card reader"
    assert values["preferences"] == "Prefers email updates"
    assert values["open_issues"].startswith(f"#{actors.open_ticket.pk} Charged twice for March:")
    passage = ArchivalPassage.objects.get(customer=actors.customer, tags=["order"])
    assert passage.text == "Order: A-10442" and passage.source_message_id == message.pk
    labels = [e["label"] for e in events if e["type"] == "step"]
    assert labels[:2] == ["Searching our past conversations", "Searching my notes"]
    _every_call_was_valid(run)


def test_a_fact_is_not_recorded_twice(actors, blocks, offline):
    _turn(actors.customer, MESSAGE)
    before = {b.label: (b.value, b.version) for b in MemoryBlock.objects.filter(customer=actors.customer)}
    run = _turn(actors.customer, MESSAGE)
    after = {b.label: (b.value, b.version) for b in MemoryBlock.objects.filter(customer=actors.customer)}
    assert before == after and run.status == AgentRun.Status.COMPLETED
    assert ArchivalPassage.objects.filter(customer=actors.customer, tags=["order"]).count() == 1


def test_a_fact_ends_at_its_clause_boundary():
    text = "Hi, my name is Tomás Ferreira and I work at Lisbon Ceramics. Our printer prints blank labels."
    assert [fact.line for fact in facts_in(text)] == ["Name: Tomás Ferreira", "Works at Lisbon Ceramics"]
    text = "I use the Verifone P400 and my order number is A-2291. I work at Whitfield Bakery but not on Sundays."
    assert [f.line for f in facts_in(text)] == ["Uses the Verifone P400", "Order: A-2291", "Works at Whitfield Bakery"]


def test_questions_are_never_a_source_of_facts(actors, blocks, offline):
    assert is_question("Can you remind me what my order number is…")
    assert facts_in("Can you remind me what my order number is… And is my name spelled right?") == []
    # A request to change a detail states the new value, question mark or not.
    assert [f.line for f in facts_in("Could you update my address to 5 Elm Street, Leeds?")] == [
        "Address: 5 Elm Street, Leeds"
    ]
    run = _turn(actors.customer, "Can you remind me what my order number is and what my name is?")
    assert not ArchivalPassage.objects.filter(customer=actors.customer).exists()
    assert _values(actors.customer)["customer"] == ""
    assert "I found nothing about that in your history" in run.reply


def test_now_replaces_the_core_fact(actors, blocks, offline):
    _turn(actors.customer, "Hello, my name is Dana Whitfield.")
    run = _turn(actors.customer, "Quick update: my name is Dana Whitfield-Okafor now, I got married.")
    assert _values(actors.customer)["customer"] == "Name: Dana Whitfield-Okafor"
    assert [c["name"] for c in run.steps.get(index=0).tool_calls].count("core_memory_replace") == 1
    answer = _turn(actors.customer, "What name do you have on file for me?")
    assert "Name: Dana Whitfield-Okafor (what I have on file)" in answer.reply


def test_a_changed_order_number_supersedes_the_old_one(actors, blocks, offline):
    _turn(actors.customer, "My order number is 30-551872 and the bracket is missing.")
    run = _turn(actors.customer, "The warehouse said the order number changed to 30-551990.")
    _every_call_was_valid(run)
    old = ArchivalPassage.objects.get(customer=actors.customer, text="Order: 30-551872")
    new = ArchivalPassage.objects.get(customer=actors.customer, text="Order: 30-551990")
    assert old.invalidated_at is not None and old.superseded_by_id == new.pk and new.invalidated_at is None
    assert "replacing 30-551872" in run.reply
    answer = _turn(actors.customer, "What is my order number?")
    assert "30-551990" in answer.reply and "30-551872" not in answer.reply


def test_answers_with_the_ticket_resolution_never_its_own_replies(actors, blocks, offline):
    consolidation = agent_run(customer=actors.customer, trigger="consolidation", ticket=actors.solved_ticket)
    assert consolidation.status == AgentRun.Status.COMPLETED
    _turn(actors.customer, "Hello there, I have a question about the card reader.")
    run = _turn(actors.customer, "What was the fix for the card reader last time?")
    assert "Resolution: Please update the reader firmware to 4.2.3" in run.reply
    assert f"summary of ticket #{actors.solved_ticket.pk}" in run.reply
    evidence = [line for line in run.reply.splitlines() if line.startswith("- ")]
    assert 1 <= len(evidence) <= 3
    assert not any("(offline model)" in line for line in evidence)


def test_says_plainly_when_nothing_was_found(actors, blocks, offline):
    run = _turn(actors.other_customer, "Is there a student discount?")
    asked = "\u201cIs there a student discount?\u201d"
    assert run.reply == f"(offline model) You asked: {asked} I found nothing about that in your history."


def test_offline_model_is_deterministic():
    messages = [{"role": "system", "content": "core"}, {"role": "user", "content": MESSAGE}]
    tools = [
        {"type": "function", "function": {"name": n}}
        for n in ("conversation_search", "archival_memory_search", "core_memory_append", "archival_memory_insert")
    ]
    one = OfflineBackend().complete(messages=messages, tools=tools)
    two = OfflineBackend().complete(messages=messages, tools=tools)
    assert [(c.name, c.arguments) for c in one.tool_calls] == [(c.name, c.arguments) for c in two.tool_calls]
    assert keywords("The card reader stopped syncing again") == ["stopped", "syncing", "reader", "card"]


# Phrasings written after the first rules, from conversations the rules were not written on: introductions
# without "my name is", names before a company, codes without "my", tiers and seats, devices, and preferences
# stated as requests.
PHRASINGS = [
    (
        "Hello, this is Priya Raman from Northwind Logistics. Our account ID is NW-4471 and the invoices lack VAT.",
        ["Name: Priya Raman", "Works at Northwind Logistics", "Account: NW-4471"],
    ),
    ("Quick update: we moved offices, the new address is 12 Harbour Road, Leith.", ["Address: 12 Harbour Road, Leith"]),
    (
        "hi its marco. im running windows 11 on a thinkpad x1 carbon and the vpn drops",
        ["Name: Marco", "Uses windows 11", "Uses thinkpad x1 carbon"],
    ),
    ("that fixed it! also pls text me instead of emailing", ["Prefers contact by text"]),
    ("Order A-99812 arrived with a cracked screen. I'm Inès Duarte.", ["Order: A-99812", "Name: Inès Duarte"]),
    (
        "Helga Brandt here, IT lead at Fjordline AS. We are on the Enterprise tier with 40 seats.",
        ["Name: Helga Brandt", "Works at Fjordline AS", "Plan: Enterprise tier", "Seats: 40 seats"],
    ),
    (
        "Buenos días, soy Lucía Moreno. The printer we use is an HP LaserJet M404dn.",
        ["Name: Lucía Moreno", "Uses HP LaserJet M404dn"],
    ),
    ("One more thing: I'd rather you replied in Spanish from now on.", ["Prefers replies in Spanish"]),
    ("Tariq Aziz. The app crashes on my Pixel 8 whenever I open the scanner.", ["Name: Tariq Aziz", "Uses Pixel 8"]),
    (
        "Mei Lin from Bamboo Studio. Please schedule calls after 2pm SGT.",
        ["Name: Mei Lin", "Works at Bamboo Studio", "Prefers calls after 2pm SGT"],
    ),
    (
        "Internet is slow. I have a Fritzbox 7590 router.\n\nThanks,\nSam Okafor",
        ["Uses Fritzbox 7590 router", "Name: Sam Okafor"],
    ),
    ("yuki here.", ["Name: Yuki"]),
    ("Small update: I got married. So it's Rosa Castillo.", ["Name: Rosa Castillo"]),
    ("New mobile number: +44 7700 900456.", ["Phone: +44 7700 900456"]),
    ("Account number 55120-A. I was billed twice for November. Fatima Noor", ["Account: 55120-A", "Name: Fatima Noor"]),
    ("Hello, Aiko Tanaka. Uploads fail with error 413.", ["Name: Aiko Tanaka"]),
    (
        "Please don't phone me, I'm at work all day. Email is best.",
        ["Prefers no contact by phone", "Prefers contact by email"],
    ),
    ("I work at Hexa Consulting and use your CRM on Android.", ["Works at Hexa Consulting", "Uses CRM on Android"]),
    ("I'm Paulo Reis, booking reference QX7T2P.", ["Name: Paulo Reis", "Reference: booking QX7T2P"]),
    ("The wifi on our Eero 6 mesh drops.", ["Uses Eero 6 mesh"]),
    (
        "I have a nut allergy, so please never send nut-based snacks in my box.",
        ["Prefers nut allergy", "Prefers never send nut-based snacks"],
    ),
    # Not facts: an apology, a capitalised adjective, a weekday, a problem one has, a number that is not a code.
    ("I'm sorry to bother you. I'm Not sure. It's Monday. I have a problem with order 12.", []),
]


def test_facts_in_reads_the_common_ways_customers_state_them():
    for text, expected in PHRASINGS:
        assert [fact.line for fact in facts_in(text)] == expected, text


def test_a_switch_replaces_the_device_and_a_seat_count_replaces_the_old_one(actors, blocks, offline):
    _turn(actors.customer, "Tariq Aziz. The app crashes on my Pixel 8 whenever I open the scanner.")
    _turn(actors.customer, "We have 40 seats.")
    _turn(actors.customer, "Switched to an iPhone 15 now. We upgraded to 60 seats last week.")
    customer = _values(actors.customer)["customer"]
    assert "Uses an iPhone 15" in customer and "Pixel 8" not in customer
    assert "Seats: 60 seats" in customer and "40 seats" not in customer
    run = _turn(actors.customer, "Which phone am I using, and how many seats do we have?")
    assert "iPhone 15" in run.reply


def test_a_blocks_description_is_not_a_fact():
    from support_agent.offline_model import _block_lines

    system = (
        '<customer chars="20/2000">\n'
        "Who the customer is: name, company, plan, products they use, how they contact us.\n"
        "Name: Dana Whitfield\n</customer>"
    )
    assert _block_lines(system, "customer") == ["Name: Dana Whitfield"]


def test_a_question_word_meets_its_longer_form():
    from support_agent.offline_model import _Evidence, _score

    item = _Evidence("We're closed on Mondays, so deliveries must come Tuesday to Saturday.", "you wrote")
    assert _score("On which days can you deliver to us?", item, []) == 1  # deliver / deliveries
    assert _score("Is the shop open?", item, []) == 0  # short words never match by their start
