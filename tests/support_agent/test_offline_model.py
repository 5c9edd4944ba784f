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
from tickets.services import message_ingest

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


# Session 8: phrasings from sets in other industries and tones (docs/agent-eval.md, confirmation_4 to _7): a name
# after a greeting, a dash or a role, keyed by what it is the name of, or shouted; emoji as sentence breaks; contact
# details wherever they are stated; addresses by their shape; references that keep what they are; add-ons, needs,
# diets, availability, pets and children.
PHRASINGS_SESSION_8 = [
    (
        "Hey - Dmitri Volkov, finance at Lumenstack. We're on the Pro plan, 40 seats, billed annually.",
        ["Name: Dmitri Volkov", "Works at Lumenstack", "Plan: Pro plan", "Seats: 40 seats"],
    ),
    (
        "Hi team, Chioma Eze, IT admin for Kestrel Health. We have 180 users on the Enterprise plan.",
        ["Name: Chioma Eze", "Role: IT admin", "Works at Kestrel Health", "Plan: Enterprise plan", "Seats: 180 users"],
    ),
    ("Webhooks return 401.\n-- Rafael Souza, platform eng @ QuarryTech", ["Name: Rafael Souza", "Works at QuarryTech"]),
    ("POLICY HOLDER IS GRAHAM MCALLISTER. ADJUSTER NEVER CAME.", ["Name: Graham Mcallister"]),
    ("The name on the account is Edith Parrish, it used to be under Harold's name.", ["Name: Edith Parrish"]),
    (
        "hiya \U0001f44b Siobhán Ó Murchú here, I've got the Fibre 500 broadband with you",
        ["Name: Siobhán Ó Murchú", "Uses Fibre 500 broadband"],
    ),
    (
        "Good day, here is Jürgen Hoffmann from Brandt & Söhne GmbH.",
        ["Name: Jürgen Hoffmann", "Works at Brandt & Söhne GmbH"],
    ),
    (
        "Olá. João Pedro Almeida. You can reach me on +44 7911 456 120.",
        ["Name: João Pedro Almeida", "Phone: +44 7911 456 120"],
    ),
    (
        "Bonjour, I am Élodie Marchand. I would like a room quiet, far from elevator.",
        ["Name: Élodie Marchand", "Prefers room quiet"],
    ),
    ("thanks, Aoibheann", ["Name: Aoibheann"]),
    (
        "AND MY NUMBER CHANGED, ITS 07911 123 456 NOW. CALL ME ON THAT ONE ONLY.",
        ["Phone: 07911 123 456", "Prefers contact by phone"],
    ),
    (
        "The airline send me new e-ticket, number is 157-2398445521. You can reach me on WhatsApp +84 912 345 678.",
        ["Reference: e-ticket 157-2398445521", "Phone: +84 912 345 678", "Prefers contact by whatsapp"],
    ),
    ("invoices should go to ap@lumenstack.io from now on", ["Email: ap@lumenstack.io"]),
    (
        "can u send the replacment in XL insted to my office at 3 Canal Wharf, Leeds LS11 5PU",
        ["Address: 3 Canal Wharf, Leeds LS11 5PU"],
    ),
    (
        "We're at 27 Willow Lane, Hexham NE46 3RT, have been for forty years.",
        ["Address: 27 Willow Lane, Hexham NE46 3RT"],
    ),
    (
        "new address: Flat 5, 22 Mare Street, London E8 4RP. delivery on weekends is best for me",
        ["Address: Flat 5, 22 Mare Street, London E8 4RP", "Prefers delivery on weekends"],
    ),
    ("The card ends in 4417.", ["Card ending 4417"]),
    (
        "I'm Haruto Sato, date of birth 12/04/1987, patient ID PT-55821. "
        "I can only come on Tuesday or Thursday mornings.",
        [
            "Name: Haruto Sato",
            "Reference: patient ID PT-55821",
            "Date of birth: 12/04/1987",
            "Prefers appointments on Tuesday or Thursday mornings",
        ],
    ),
    ("My insurer is Bupa, membership 8821-3340.", ["Reference: membership 8821-3340", "Insurer: Bupa"]),
    ("Please note I now prefer letters by post rather than emails.", ["Prefers letters by post"]),
    (
        "But please do still ring me on the landline 01434 602 118 if something's wrong.",
        ["Phone: 01434 602 118", "Prefers contact by phone"],
    ),
    (
        "cracked screen on my galaxy s24 ultra, i have the phone cover with you guys, policy PX-33019-K",
        ["Uses galaxy s24 ultra", "Uses phone cover", "Reference: policy PX-33019-K"],
    ),
    ("Account: acct_9F3KQ2. Our integration runs on Node 20.", ["Account: acct_9F3KQ2", "Uses Node 20"]),
    (
        "We're moving our SSO from Okta to Azure AD this weekend; our tenant is kestrelhealth.onmicrosoft.com.",
        ["Uses Azure AD", "Tenant: kestrelhealth.onmicrosoft.com"],
    ),
    ("Correction on the user count: it's 210, not 180.", ["Seats: 210 users"]),
    (
        "I hold a savings account with you (sort code 20-45-77, account 83310452).",
        ["Uses savings account", "Account: 83310452", "Reference: sort code 20-45-77"],
    ),
    ("Reference on the transfer was FLAT12RENT.", ["Reference: transfer FLAT12RENT"]),
    ("I've started working at Deloitte.", ["Works at Deloitte"]),
    ("I'm vegan so no milk-chocolate add-ons pls", ["Prefers vegan diet"]),
    ("Need a child seat and automatic gearbox please.", ["Prefers child seat and automatic gearbox"]),
    ("pls send reminders by sms not email", ["Prefers reminders by sms"]),
    (
        "My grandson set me up with the paperless billing. I added the travel pass.",
        ["Uses paperless billing", "Uses travel pass"],
    ),
    ("the app logs me out every time I lock my iPad Air", ["Uses iPad Air"]),
    (
        "Evening. Tom Okonjo, 3 Hawthorn Close, Didcot OX11 7GH. It's the SolarEdge SE5000H model.",
        ["Name: Tom Okonjo", "Address: 3 Hawthorn Close, Didcot OX11 7GH", "Uses SolarEdge SE5000H"],
    ),
    (
        "I'm home weekday afternoons, best to text 07700 900 321 first",
        ["Phone: 07700 900 321", "Prefers contact by text", "Prefers appointments weekday afternoons"],
    ),
    (
        "Our dog Bolt (a 4 year old beagle) had surgery. I'm Priscila Nogueira, policyholder, plan Paws Plus.",
        ["Dog: Bolt", "Name: Priscila Nogueira", "Plan: Paws Plus"],
    ),
    ("I've moved to Uppsala, so the vet will be a different one.", ["Lives in Uppsala"]),
    (
        "For deliveries please note our warehouse moved: Unit 12, Tilbury Trade Park, Essex RM18 7NR.",
        ["Address: Unit 12, Tilbury Trade Park, Essex RM18 7NR"],
    ),
    ("Hi, Rasmus Kjær here, dad of Freja in year 4.", ["Name: Rasmus Kjær", "Child: Freja"]),
    (
        "Freja moved to class 4C. And she's now gluten-free, doctor confirmed, can you flag that for lunches?",
        ["Class: 4C", "Prefers gluten-free diet"],
    ),
    ("surname is Gallagher btw", ["Surname: Gallagher"]),
    # Not facts: a staff member greeted by name, an address written to, a number called, problems and requests, a
    # capitalised error, an address that is not one, a count of people with a problem, shouted words, a meeting moved.
    ("Hi Sarah, thanks for Friday, the fix worked.", []),
    ("I emailed support@acme.com twice and nobody answered.", []),
    ("I called 0800 123 4567 yesterday but the line was busy.", []),
    ("The error code is 0x80070005. My internet is slow. My English is not great.", []),
    ("I'd like a refund please. I need to reset my password please. I've got Error 500 on checkout.", []),
    ("The address on the invoice is wrong. 2 users can't log in since Monday.", []),
    ("THE APP CRASHES EVERY TIME I OPEN IT. PLEASE FIX.", []),
    ("We're moving the meeting from Tuesday to Friday. Put me on hold again, great.", []),
    # "we moved to" names a product as often as a city; a team's size, an appointment, a part are not facts kept.
    ("we moved to Slack last year. Our team is 5 people.", []),
    ("I have an appointment with you on Tuesday. I need a seat belt replacement.", []),
]

# Replies to a staff question: the reply is read for what the question asked, in the order it asked.
REPLIES = [
    (
        "Can I have your name and date of birth?",
        "Mateus Oliveira, 03/09/1991",
        ["Name: Mateus Oliveira", "Date of birth: 03/09/1991"],
    ),
    (
        "What's your account number so I can correct the reading?",
        "It's 600 482 913 I think, it's on the top of the letter.",
        ["Account: 600 482 913"],
    ),
    (
        "Who am I speaking with, and what's the IMEI?",
        "Jasmine Kaur. imei 356938035643809, pickup postcode M4 6BF",
        ["Name: Jasmine Kaur", "Reference: imei 356938035643809", "Postcode: M4 6BF"],
    ),
    ("Which workspace? And your name please.", "pixelforge. Wen Zhao.", ["Name: Wen Zhao", "Workspace: pixelforge"]),
    (
        "What's the new address so I can check fibre availability?",
        "it's 14 Quay Street, Galway H91 X2Y3 \U0001f3e1 moving on the 20th",
        ["Address: 14 Quay Street, Galway H91 X2Y3"],
    ),
    ("What's your order number?", "55-1234", ["Order: 55-1234"]),
    ("What's your order number?", "sorry, I don't have it to hand", []),
    ("What's your address?", "12 days ago I moved, not sure of the postcode", []),
]


def test_facts_in_reads_phrasings_from_other_industries_and_tones():
    for text, expected in PHRASINGS_SESSION_8:
        assert [fact.line for fact in facts_in(text)] == expected, text


def test_a_reply_to_a_staff_question_is_read_for_what_was_asked():
    for staff, reply, expected in REPLIES:
        assert [fact.line for fact in facts_in(reply, staff)] == expected, (staff, reply)
    # Without the question, a bare code or a name with a date says nothing.
    assert facts_in("55-1234") == [] and facts_in("Mateus Oliveira, 03/09/1991") == []


def _staff_says(customer: Customer, body: str) -> None:
    message_ingest(customer=customer, ticket=None, body=body, author_role="staff", announce=False)


def test_a_reply_to_staff_is_stored_and_a_shorter_name_keeps_the_full_one(actors, blocks, offline):
    _turn(actors.customer, "Hi, need to cancel my cleaning on Friday")
    _staff_says(actors.customer, "Sorry to hear that! Can I have your name and date of birth?")
    _turn(actors.customer, "Mateus Oliveira, 03/09/1991")
    _turn(actors.customer, "Hi it's Mateus. surname is Gallagher now btw")
    customer = _values(actors.customer)["customer"]
    assert "Date of birth: 03/09/1991" in customer
    # "it's Mateus" does not shorten the name on file; a new surname keeps the given name.
    assert "Name: Mateus Gallagher" in customer and "Name: Mateus\n" not in customer + "\n"


def test_the_staff_message_with_the_replacement_outranks_the_stored_order(actors, blocks, offline):
    _turn(actors.customer, "Order A-99812 arrived with a cracked screen. I'm Inès Duarte.")
    _staff_says(actors.customer, "So sorry Inès. We've shipped a replacement; the replacement order is A-99907.")
    run = _turn(actors.customer, "What's the replacement order number?")
    assert "A-99907" in run.reply
    run = _turn(actors.customer, "Can you remind me what my order number is?")
    assert "Order: A-99812" in run.reply.splitlines()[1]


def test_a_new_reference_of_another_kind_does_not_replace_the_booking(actors, blocks, offline):
    _turn(actors.customer, "The booking code is K7YQ2M.")
    _turn(actors.customer, "The airline send me new e-ticket, number is 157-2398445521.")
    current = ArchivalPassage.objects.filter(customer=actors.customer, invalidated_at__isnull=True)
    assert sorted(p.text for p in current) == ["Reference: booking code K7YQ2M", "Reference: e-ticket 157-2398445521"]


# Session 8, second round (confirmation_8 to _10): job titles, labelled list lines, memberships and passes, branches,
# moves between two addresses, a changed thing of the customer's, degrees, lower-case names, a name spelled out after
# a short one, counts of desks and employees, more kinds of reference; contacts in a sentence about someone else.
PHRASINGS_SESSION_8B = [
    (
        "Hi! Ingrid Solberg, ops lead at Fjordline Studio. We've got the Team membership with 6 hot desks at your "
        "Grünerløkka location.",
        [
            "Name: Ingrid Solberg",
            "Role: ops lead",
            "Works at Fjordline Studio",
            "Plan: Team membership",
            "Seats: 6 hot desks",
            "Location: Grünerløkka",
        ],
    ),
    (
        "Quick summary of our setup:\n- Company: Mabena Accounting (Pty) Ltd\n- Product: PayDay Cloud, Business "
        "edition\n- Employees on payroll: 48\n- Me: Lindiwe Mabena, payroll administrator",
        [
            "Works at Mabena Accounting Pty Ltd",
            "Plan: Business edition",
            "Uses PayDay Cloud",
            "Seats: 48 employees",
            "Name: Lindiwe Mabena",
            "Role: payroll administrator",
        ],
    ),
    ("- tables updated\n- we've grown: 52 employees from next month", ["Seats: 52 employees"]),
    ("from next month we'd like 8 dedicated desks instead of the hot desks", ["Seats: 8 dedicated desks"]),
    (
        "My membership number is GM-204417 and I attend the Clifton branch. I am on the Off-Peak membership.",
        ["Account: GM-204417", "Reference: membership GM-204417", "Branch: Clifton", "Plan: Off-Peak membership"],
    ),
    ("switched from the monthly pass to the annual one today", ["Plan: annual pass"]),
    ("Please upgrade us to Business Hosting from today, the shop is growing.", ["Plan: Business Hosting"]),
    (
        "im theo van dijk, account on the app is under theo.vd@gmail.com. ride id R-88127-X on 3 may.",
        ["Name: Theo Van Dijk", "Email: theo.vd@gmail.com", "Reference: ride id R-88127-X"],
    ),
    ("It's Kapoor, Arjun Kapoor, with two o's.", ["Name: Arjun Kapoor"]),
    (
        "I'm Chloé Martin, flat 3B, 18 Rue des Lilas, Lyon.",
        ["Name: Chloé Martin", "Address: flat 3B, 18 Rue des Lilas, Lyon"],
    ),
    (
        "Student ID s2231874. Kwabena Asante, MSc Data Science, second year.",
        ["Reference: student ID s2231874", "Name: Kwabena Asante", "Course: MSc Data Science"],
    ),
    ("Morning! Bas de Groot. Job number OP-33019.", ["Name: Bas de Groot", "Reference: job OP-33019"]),
    ("my name is Femi Adeyemi and I'm in Croydon", ["Name: Femi Adeyemi", "Lives in Croydon"]),
    (
        "we're going from 9 Elm Row, Edinburgh EH7 4AA to 52 Kelvin Drive, Glasgow G20 8QG.",
        ["Moving from: 9 Elm Row, Edinburgh EH7 4AA", "Moving to: 52 Kelvin Drive, Glasgow G20 8QG"],
    ),
    ("name on booking is Oksana Petrenko", ["Name: Oksana Petrenko"]),
    ("the doctor has changed my tablets to amlodipine 10mg from this month", ["Tablets: amlodipine 10mg"]),
    ("i play on an Xbox Series X", ["Uses Xbox Series X"]),
    ("Bought a HomeLink door sensor too, for the back door.", ["Uses HomeLink door sensor"]),
    ("* hub: HomeLink Hub 2", ["Uses HomeLink Hub 2"]),
    ("I'm usually reachable on +47 912 34 567.", ["Phone: +47 912 34 567"]),
    ("please leave orders with the concierge", ["Prefers leave orders with the concierge"]),
    ("also i start a new job at Farfetch", ["Works at Farfetch"]),
    ("hi it's Tomasz speaking, the ticket says BK-5072", ["Name: Tomasz", "Reference: ticket BK-5072"]),
    # Not the customer's: a partner's email, a brother's account, a flatmate's order; not a request: "I don't use".
    ("my partner Rui set up his own account on the hub, rui.c@sapo.pt, that's his not mine.", ["Partner: Rui"]),
    ("my brother's number is 07700 900 123, he uses the console too", []),
    ("My flatmate Inès ordered separately (her order is FD-558240) and hers came fine.", []),
    ("please ring the landline, I don't use the mobile.", []),
    # Not names, cities, roles or details: lower-case complaints after "im", a department, a password, a weekday.
    ("im waiting for ages, this is ridiculous. im stuck at home, no internet.", []),
    ("I'm in Sales, and I changed my password to Hunter22 yesterday.", []),
    ("Dmitri Volkov, finance at Lumenstack.", ["Name: Dmitri Volkov", "Works at Lumenstack"]),
    ("Can you move me to Friday please. I'm in March's cohort.", []),
]

REPLIES_8B = [
    (
        "Can I take the account holder's name and the postcode?",
        "Dariusz Nowak. LS6 2AB",
        ["Name: Dariusz Nowak", "Postcode: LS6 2AB"],
    ),
    (
        "And which router model is it, and is it a fibre or copper line?",
        "Hub 4. fibre",
        ["Uses Hub 4", "Line: fibre"],
    ),
    ("Matte or glossy again?", "matte this time please", ["Prefers matte"]),
    ("Is it a fibre or copper line?", "no idea sorry", []),
    (
        "Which authenticator are you using?",
        "Microsoft Authenticator on an iPhone 13",
        ["Uses iPhone 13", "Uses Microsoft Authenticator"],
    ),
    (
        "Please upload a newer one. Also, please confirm your date of birth.",
        "12/04/1990. I've uploaded a bank statement instead.",
        ["Date of birth: 12/04/1990"],
    ),
    (
        "What's your student number and full name please?",
        "LS-4410, Ana Beatriz Souza",
        ["Reference: student LS-4410", "Name: Ana Beatriz Souza"],
    ),
    (
        "Could I take your surname for the collection slip?",
        "Zieliński, Tomasz Zieliński",
        ["Surname: Zieliński", "Name: Tomasz Zieliński"],
    ),
]


def test_facts_in_reads_the_second_round_of_phrasings():
    for text, expected in PHRASINGS_SESSION_8B:
        assert [fact.line for fact in facts_in(text)] == expected, text


def test_a_reply_to_a_staff_question_second_round():
    for staff, reply, expected in REPLIES_8B:
        assert [fact.line for fact in facts_in(reply, staff)] == expected, (staff, reply)


def test_a_reference_the_staff_gave_is_the_customers():
    from support_agent.offline_model import _staff_told

    staff = "[2026-11-06 10:00] Support staff wrote to the customer: Hi Ingrid. Your membership ID is CW-3307."
    history = [{"role": "system", "content": "core"}, {"role": "system", "content": staff}]
    assert [fact.line for fact in _staff_told(history)] == ["Reference: membership CW-3307"]
    other = "[2026-11-06 10:00] Support staff wrote to the customer: We refunded order FD-558240 to your card."
    assert _staff_told([{"role": "system", "content": "core"}, {"role": "system", "content": other}]) == []


def test_a_long_reply_to_a_staff_question_reads_a_bounded_run_after_each_piece(monkeypatch):
    """Each piece of a reply reads at most REPLY_RUN_CHARS of what follows it (an address that runs on): reading the
    whole rest for every piece made a reply of thousands of lines quadratic. The address still runs on."""
    from support_agent.offline_model import extraction

    lead = extraction._REPLY_LEAD
    read: list[int] = []

    class Recording:
        def sub(self, repl, text, count=0):
            read.append(len(text))
            return lead.sub(repl, text, count=count)

    monkeypatch.setattr(extraction, "_REPLY_LEAD", Recording())
    reply = "Thanks,\n" * 2000 + "14 Quay Street, Galway H91 X2Y3"
    facts = extraction._answers_to("What is the delivery address?", reply)
    assert max(read) <= extraction.REPLY_RUN_CHARS
    assert [fact.value for fact in facts] == [
        extraction._answers_to("What is the delivery address?", "14 Quay Street, Galway H91 X2Y3")[0].value
    ]
