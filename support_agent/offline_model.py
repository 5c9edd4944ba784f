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
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from memory.services import DEFAULT_CUSTOMER_BLOCKS
from support_agent.llm import LLMResponse, ToolCallRequest
from support_agent.tokens import count_message_tokens, count_tokens


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Capital letters of the Latin, Greek and Cyrillic alphabets: "Élodie", "Łukasz", "Ó Murchú" are capitalised too.
# A pattern's "[A-Z]" stands for this class (``_compiled``).
_UPPER = "[" + "".join(chr(code) for code in range(0x41, 0x530) if chr(code).isupper()) + "]"
# Greetings that open a message before a name: "hiya", "Salam", "Olá", "Good day", "Hi team".
_GREETING = (
    r"(?:hi|hiya|hello|hey|heya|hej|hallo|hola|ol[aá]|oi|salam|salut|ciao|namaste|bonjour|buenos d[ií]as|good \w+|"
    r"morning|afternoon|evening|greetings|dear \w+)(?: there| all| team| folks| guys| everyone| again)?"
)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    """A case-insensitive pattern whose "[A-Z]" (inside ``(?-i:...)``) means any capital letter (``_UPPER``)."""
    return re.compile(pattern.replace("[A-Z]", _UPPER), re.IGNORECASE)


# Emoji end a thought like a full stop: "it's 14 Quay Street, Galway \U0001F3E1 moving on the 20th".
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d]+")
OFFLINE_NAME = "offline model"
_BLOCK_DESCRIPTIONS = frozenset(description for _, description, _ in DEFAULT_CUSTOMER_BLOCKS)
REPLY_PREFIX = "(offline model)"

_MESSAGE_EVENT = re.compile(
    r'^New message from the customer(?: on ticket #(?P<ticket>\d+) "(?P<subject>.*?)")? \([^)]*\):\n(?P<body>.*)$',
    re.DOTALL,
)
_SOLVED_EVENT = re.compile(r'^Ticket #(?P<ticket>\d+) "(?P<subject>.*?)" was solved')
_STOPWORDS = _wordset(
    """
    the and for you your with this that have has had was were are not but can could would should our out from they
    them their there what when where which who whom whose how why about into just also any all its it's i'm im
    please thanks thank hello dear again still since will does did been being very more some than then is am be
    to of in on at by as or if it me my mine we us an a i do so hi hey there's what's whats where's tell
    remind know remember let get got give find want need like last time one ones right now currently again
    """
)
# Sentence openings that ask rather than tell.
_QUESTION_START = re.compile(
    r"^(?:(?:so|and|but|also|ok|okay|hi|hello|hey)[,!]?\s+)*(?:what|what's|whats|when|where|where's|which|who|"
    r"whom|whose|why|how|can|could|would|will|do|does|did|is|are|was|were|have|has|should|may|might|any)\b",
    re.IGNORECASE,
)
_QUESTION_PHRASE = re.compile(r"\b(?:remind me|tell me|do you (?:know|remember|have)|let me know)\b", re.IGNORECASE)
# A request to change a detail states the new value even when phrased as a question.
# So does a request to send something somewhere of theirs ("can you ship it to my office at Unit 4, ...?").
_CHANGE_REQUEST = re.compile(
    r"\b(?:update|change|set|correct)\s+my\b[^?]*?\bto\b|"
    r"\b(?:send|ship|deliver|post|forward|redirect)\b[^?]*?\bto (?:my|our) (?:new )?(?:office|home|house|flat|work|"
    r"apartment|place|address)\b",
    re.IGNORECASE,
)
_ADDITION = re.compile(r"\b(?:too|as well|another|second|in addition)\b", re.IGNORECASE)
_CHANGE_MARKER = re.compile(
    r"\b(?:now|new|changed|change|update|updated|switched|moved|instead|no longer|anymore|correction|actually)\b",
    re.IGNORECASE,
)
# Where a fact's value stops: punctuation, or a word that starts another clause or qualifies the sentence.
_BOUNDARY_WORDS = _wordset(
    """
    and but so because which who where as since though although while if when now anymore instead too also btw
    please thanks thank from not again yet already either here there then i i'm im we we're my our you your is was
    are were has have had do does did can could will would just last yesterday today tomorrow ago this next every
    mostly mainly usually always often sometimes currently whenever every rather
    """
)
# A product ends sooner: "the Verifone P400 card reader at our cafe" is the Verifone P400 card reader.
_PRODUCT_BOUNDARY = _BOUNDARY_WORDS | _wordset("at in for to with after before until")
# What someone runs ends before the machine it runs on: "running windows 11 on a thinkpad".
_SYSTEM_BOUNDARY = _PRODUCT_BOUNDARY | _wordset("on")
_NAME_STOP = _BOUNDARY_WORDS | _wordset("the a an at in on to of by")
_NAME_PARTICLES = _wordset(
    "de da do dos das del della di du la le van von der den ter ten al el bin ibn ni nic ó ua mac mc"
)
# Capitalised words that open a sentence or follow "I'm" without being a name ("I'm Sorry", "Thank You.").
_NOT_NAMES = _wordset(
    """
    nobody everyone everybody someone somebody me us again anyone all
    sorry not back fine good here done okay ok unable still using on in at the a an also just so very really happy
    glad afraid sure writing trying having getting looking calling contacting reaching following reporting from
    with now new ready confused stuck locked frustrated annoyed thanks thank you hello hi hey dear urgent order
    invoice help update quick question re fwd ticket morning afternoon evening regards best cheers team support
    please pls yes no hope sent following attached monday tuesday wednesday thursday friday saturday sunday
    flight booking claim policy account card parcel package delivery payment refund error screenshot photo
    customer service sir madam everyone
    """
)
# Roles that say where someone works: "I'm the office manager at Blue Fern Dental", "IT lead at Fjordline AS".
_ROLES = (
    r"(?:manager|owner|co-owner|lead|head|director|admin|administrator|engineer|developer|accountant|founder|"
    r"co-founder|ceo|cto|cfo|coo|coordinator|assistant|officer|analyst|consultant|designer|technician|"
    r"receptionist|buyer|partner|secretary|bookkeeper|supervisor|president|chef|teacher|nurse|doctor|editor|"
    r"eng|dev|devops|ops|(?-i:IT)|hr|finance|accounts|billing|procurement|purchasing|operations|marketing|sales|"
    r"support|legal|security|platform|infra|infrastructure|facilities|payroll|admissions)"
)
# Job titles among the roles: "ops lead", "payroll administrator" are stored as a role; "finance" alone is a department.
_TITLES = (
    r"(?:manager|owner|co-owner|lead|head|director|admin|administrator|engineer|developer|accountant|founder|"
    r"co-founder|ceo|cto|cfo|coo|coordinator|assistant|officer|analyst|consultant|designer|technician|"
    r"receptionist|buyer|secretary|bookkeeper|supervisor|president|chef|teacher|nurse|editor)"
)
_ROLE_AFTER_NAME = _compiled(
    rf"^\s*,\s*(?:the |an? )?(?P<role>(?:[\w-]+ ){{0,2}}{_TITLES})(?=\s*(?:[,.;!]|$|\s(?:at|for|of|with|@|in)\b))"
)
_SIGN_OFF = _compiled(
    r"(?:^|\n|[.!?]\s+)\s*(?:thanks|thank you|many thanks|cheers|best|best wishes|regards|best regards|kind regards|"
    r"warm regards|sincerely|all the best)(?:[,!.]?\s*\n+|,[ \t]*)\s*(?:[-\u2013\u2014]+\s*)?"
    r"(?P<name>(?-i:[A-Z][\w'\u2019-]*(?: [A-Z][\w'\u2019-]*){0,2}))\.?\s*$"
    # "-- Rafael Souza, platform eng @ QuarryTech": a signature line of its own
    r"|\n\s*(?:--|\u2013|\u2014)\s*(?P<signed>(?-i:[A-Z][\w'\u2019-]*(?: [A-Z][\w'\u2019-]*){1,2}))(?=\s*(?:,|$))",
)
_BARE_NAME = _compiled(
    rf"^(?:{_GREETING}[,!.]?\s+)?"
    r"(?P<name>(?-i:[A-Z][\w'\u2019-]*(?: (?:(?:de|da|van|von|der|den|di|du|le|la|el|al|dos|del) )?[A-Z][\w'\u2019-]*)"
    r"{1,2}))[.,!]?$",
)
# After a name: "from Northwind Logistics", "here, IT lead at Fjordline AS", ", owner of Blue Fern".
_NAME_THEN_EMPLOYER = _compiled(
    rf"^(?:\s+here)?\s*,?\s*(?:(?:the |an? )?(?:[\w-]+ ){{0,2}}{_ROLES}\s+)?"
    r"(?:from|at|of|with|for|@)\s*(?=(?-i:[A-Z]))",
)
_ABBREVIATIONS = re.compile(r"\b(?:St|Ave|Rd|Apt|No|Dr|Mr|Mrs|Ms|Blvd|Ln|Nr|Str)\.", re.IGNORECASE)


@dataclass(frozen=True)
class Kind:
    """A kind of fact: how it is written, where it is kept, whether a customer has one or several."""

    key: str
    prefix: str  # the stored line starts with this: "Name: ", "Works at "
    target: str  # "customer", "preferences" or "archival"
    single: bool  # one current value (a second one replaces the first)
    reader: str  # how the value is read: "name", "phrase", "code", "email", "phone", "address"
    # Regexes ending where the value starts; a Trigger reads its value its own way ("text me" -> "contact by text").
    triggers: tuple[str | Trigger, ...]
    asked_by: tuple[str, ...]  # question words that ask for this kind


@dataclass(frozen=True)
class Trigger:
    """A trigger whose value is read by another reader than its kind's and written through a template."""

    pattern: str
    reader: str
    template: str = "{}"
    # Found by capital letters alone ("I'm Kwame Osei", "Sven Lindqvist here"): not in a sentence written all in
    # capitals, where every word looks like a name ("ADJUSTER NEVER CAME").
    capitalised: bool = False
    label: str = ""  # a detail's noun when the pattern does not capture one ("dad of Freja": Child)


KINDS: tuple[Kind, ...] = (
    Kind(
        "name",
        "Name: ",
        "customer",
        True,
        "name",
        (
            r"\bmy (?:full |real )?name(?: is|'s| has changed to| changed to)",
            # "The name on the account is Edith Parrish", "POLICY HOLDER IS GRAHAM MCALLISTER", "booked under Ito"
            r"\b(?:(?:the )?name on (?:(?:the|my|our) )?(?:account|policy|card|booking|reservation|order|ticket|bill)"
            r"|(?:policy|account|card|booking)\s?holder(?:'s name)?|(?:booked|reserved|registered) under(?: the name)?"
            r"|under the name(?: of)?)(?: is| was)?:?",
            Trigger(
                r"(?:^|[,!.]\s*)(?:(?:so|and|now|yes|ok|okay|again|hi|hello|hey)[,]?\s+)?"
                r"(?:this is|it's|it is|here is|here's)"
                r"(?=\s+(?-i:[A-Z]))",
                "name",
                capitalised=True,
            ),
            # "Sven Lindqvist here." / "Hello, Raj Patel from Patel Logistics." / "Hey - Dmitri Volkov, finance at
            # Lumenstack" / "Hi team, Chioma Eze, IT admin for Kestrel Health": a signature at the start.
            Trigger(
                rf"^(?:{_GREETING}[,!.:]?\s*(?:[-\u2013\u2014]+\s*)?)?(?:[-\u2013\u2014]+\s*)?"
                r"(?=(?-i:[A-Z][\w'-]*(?: [A-Z][\w'-]*){1,3})"
                rf"(?: here\b| from (?-i:[A-Z])|,\s*(?:the |an? )?(?:[\w-]+ ){{0,2}}{_ROLES}\s+"
                r"(?:at|for|of|with|@)\s*(?-i:[A-Z])|,\s*\d[\w/-]*,? (?-i:[A-Z])"
                r"|,\s*(?-i:MSc|BSc|BA|MA|MEng|BEng|PhD|MBA|LLB|LLM|MPhil|BEd|MEd) (?-i:[A-Z])))",
                "name",
                capitalised=True,
            ),
            # "Hi, I'm Kwame Osei." / "I am Inès Duarte, ...": capitalised words that end the clause.
            Trigger(
                r"\b(?:I'?m|I am)(?=\s+(?-i:[A-Z])[\w'\u2019-]*(?:\s+(?-i:[A-Z])[\w'\u2019-]*){0,2}"
                r"\s*(?:[,.!;]|$|and\b|from\b|here\b|at\b|with\b))",
                "name",
                capitalised=True,
            ),
            # "hi its marco." at the start of a chat, in lower case.
            r"^(?:hi|hey|hello)(?: there)?[,!]?\s+(?:it's|its|this is)(?=\s+[^\W\d_]+(?:\s+[^\W\d_]+)?\s*(?:[,.!]|$))",
            Trigger(r"\b(?:me llamo|mi chiamo|je m'appelle|mein name ist)(?=\s+(?-i:[A-Z]))", "name", capitalised=True),
            # "yuki here." opening a chat in lower case: the whole sentence
            r"^(?:(?:hi|hey|hello)[,!]?\s+)?(?=[^\W\d_]{2,}\s+here[.!,]?$)",
            Trigger(r"(?:^|[,!.]\s*)soy(?=\s+(?-i:[A-Z]))", "name", capitalised=True),
            # "- Me: Lindiwe Mabena, payroll administrator": a labelled line of a list
            Trigger(r"^(?:[-*\u2022]\s*)?(?:me|name|contact|customer)\s*:(?=\s*(?-i:[A-Z]))", "name", capitalised=True),
            # "im theo van dijk, account on the app is ...": a lower-case message, two or three words before a comma
            Trigger(r"(?:^|[,.!]\s*)(?-i:i'?m|i am)(?=\s+(?-i:[a-z]+(?: [a-z]+){1,2}),)", "lowername"),
        ),
        ("name", "called", "spelled", "spell"),
    ),
    Kind(
        "employer",
        "Works at ",
        "customer",
        True,
        "phrase",
        (
            r"\bI(?: now| currently)? work (?:at|for)",
            r"\bI'?m (?:now )?(?:working|employed) (?:at|for)",
            # "I've started working at Deloitte", "I just joined Polar Freight"
            r"\bI(?:'ve| have|'m| am)?(?: just| now| recently)? (?:started|begun|began|start|starting) "
            r"(?:working |a (?:new )?job )?"
            r"(?:at|for|with)",
            r"\bI(?:'ve| have)?(?: just| now| recently)? joined(?= (?-i:[A-Z]))",
            r"\b(?:my|our) (?:company|employer|business|organi[sz]ation) is(?: called)?",
            rf"\bI'?m (?:the |an? )?(?:[\w-]+ ){{0,2}}{_ROLES} (?:at|for|of)(?= (?-i:[A-Z]))",
            # "- Company: Mabena Accounting (Pty) Ltd": a labelled line of a list
            r"^(?:[-*\u2022]\s*)?(?:company|employer|organi[sz]ation|business)\s*:(?=\s*(?-i:[A-Z]))",
        ),
        ("work", "company", "employer", "job"),
    ),
    # A job title: "Ingrid Solberg, ops lead at Fjordline Studio", "I'm the office manager at Blue Fern" (also read
    # after a name in ``facts_in``); a department alone ("finance at Lumenstack") is not a title.
    Kind(
        "role",
        "Role: ",
        "customer",
        True,
        "role",
        (rf"\bI'?m (?:the |an? )?(?=(?:[\w-]+ ){{0,2}}{_TITLES} (?:at|for|of|with)\b)",),
        ("role", "title", "position"),
    ),
    Kind(
        "plan",
        "Plan: ",
        "customer",
        True,
        "plan",
        (
            r"\b(?:I'?m|im|I am|we'?re|we are)(?: now| currently)? on(?= (?:the |a |our )?[\w -]{2,30}? "
            r"(?:plan|tier|subscription|package|edition|membership|pass)\b)",
            r"\b(?:upgraded|downgraded|switched|moved) to(?= (?:the |a )?[\w -]{2,30}? "
            r"(?:plan|tier|subscription|package|edition|membership|pass)\b)",
            r"\b(?:my|our) (?:plan|tier|subscription)(?: is| is now| changed to|:)",
            # "policyholder, plan Paws Plus": the word first, then the plan's name
            r"\bplan:?(?= (?-i:[A-Z])[\w-]*(?: (?-i:[A-Z])[\w-]*)?\s*(?:[,.;!]|$))",
            # "We have 180 users on the Enterprise plan"
            r"\b(?:I|we)\b[^.;]*?\bon(?= the [\w -]{2,30}? (?:plan|tier|subscription|edition)\b)",
            # "We've got the Team membership with 6 hot desks", "I have the Family plan"
            r"\b(?:I|we)(?:'ve| have)? (?:have|got)"
            r"(?= the (?:[\w-]+ ){1,2}?(?:plan|tier|membership|pass|subscription)\b)",
            # "- Product: PayDay Cloud, Business edition": a capitalised plan as a clause of its own
            r"(?:[,;]\s*)(?=(?-i:[A-Z])[\w-]* (?:plan|tier|edition|membership)\s*(?:[,.;!]|$))",
            # "Please upgrade us to Business Hosting from today": a plan named by its capitals
            Trigger(
                r"\b(?:upgrade|downgrade|switch|move)(?: me| us| my account| our account) to(?: the)?"
                r"(?= (?-i:[A-Z])[\w-]*(?: (?-i:[A-Z])[\w-]*){0,2}\b)",
                "name",
            ),
            # "switched from the monthly pass to the annual one": the new one takes the old one's noun
            Trigger(
                r"\b(?:switched|moved|changed|upgraded|downgraded|went) from (?:the |my |our |an? )?(?:[\w-]+ ){1,2}?"
                r"(?P<noun>plan|pass|tier|membership|subscription) to (?:the |an? )?(?=[\w-]+ one\b)",
                "word",
                "{} {noun}",
            ),
        ),
        ("plan", "subscription", "tier", "package", "edition"),
    ),
    Kind(
        "seats",
        "Seats: ",
        "customer",
        True,
        "seats",
        (
            r"\b(?:we have|we'?re on|we are on|with|(?:upgraded|downgraded|increased|reduced|went|moved|grew) to|"
            r"bought|added|now have|paying for|pay for|(?:would|'d) like|want|need)"
            r"(?= \d[\d,]* (?:[a-z-]+ )?(?:seats|licen[cs]es|user licen[cs]es|agents|users|desks|employees)\b)",
            # "We're on the Pro plan, 40 seats, billed annually", "55 seats now.", "we've grown: 52 employees": a
            # count opening a clause
            r"(?:^|[,;(:]\s*|\band\s+)"
            r"(?=\d[\d,]* (?:[a-z-]+ )?(?:seats|licen[cs]es|user licen[cs]es|desks|employees)\b)",
            # "- Employees on payroll: 48"
            Trigger(r"^(?:[-*\u2022]\s*)?(?:employees|staff)(?: [a-z]+){0,2}\s*:", "number", "{} employees"),
            # "Correction on the user count: it's 210, not 180"
            Trigger(r"\buser count(?: is)?[:,]?(?: it's| its| it is| is)?(?: now)?", "number", "{} users"),
            Trigger(r"\bseat count(?: is)?[:,]?(?: it's| its| it is| is)?(?: now)?", "number", "{} seats"),
            Trigger(r"\blicen[cs]e count(?: is)?[:,]?(?: it's| its| it is| is)?(?: now)?", "number", "{} licences"),
        ),
        ("seats", "seat", "licenses", "licences", "license", "licence", "users", "desks", "employees"),
    ),
    Kind(
        "email",
        "Email: ",
        "customer",
        True,
        "email",
        (
            r"\bmy (?:new )?e-?mail(?: address)?(?: is| changed to| has changed to| is now)",
            r"^(?:(?:new|updated|my new)\s+)?e-?mail(?: address)?(?: is| is now)?:?(?=\s*[\w.+-]+@)",
            r"\bmy e-?mail(?: address)? to",
            r"\bmy e-?mail(?:'s| has)? changed to",
            # Any address in a statement: "invoices should go to ap@lumenstack.io", "Contact for outages: x@y.dev"
            # (not one the customer wrote to: ``_about_someone_else``)
            r"(?<![\w.+-])(?=[\w.+-]+@[\w-]+\.\w)",
        ),
        ("email", "e-mail"),
    ),
    Kind(
        "phone",
        "Phone: ",
        "customer",
        True,
        "phone",
        (
            r"\bmy (?:new )?(?:phone|mobile|cell)(?: number)?(?: is| changed to| is now)",
            r"^(?:(?:new|updated|my new)\s+)?(?:phone|mobile|cell)(?: number)?(?: is| is now)?:?(?=\s*\+?\d)",
            r"\bmy (?:phone|mobile)(?: number)? to",
            # "You can reach me on +44 7911 456 120", "MY NUMBER CHANGED, ITS 07911 123 456": a number shaped like a
            # phone after a word about calling (``_phone_context``)
            r"(?<![\w+-])(?<!\d )(?=\+?\d[\d ()-]{7,}\d(?![\w/-]))",
        ),
        ("phone", "mobile", "call", "landline", "number"),
    ),
    Kind(
        "city",
        "Lives in ",
        "customer",
        True,
        "phrase",
        (
            r"\bI(?: now)? live in",
            r"\bI'?m (?:now )?based in",
            # "we moved to X" is as often a product ("we moved to Slack"): only I, or a house move, say a city
            r"\b(?:I(?:'ve| have)?(?: just| now| recently)? (?:moved|relocated)(?: house| home)?|"
            r"we(?:'ve| have)?(?: just| now| recently)? (?:relocated|moved (?:house|home))) to(?! the\b)"
            r"(?= (?-i:[A-Z])[^\W\d_]+(?:[,.;!]|$| so\b| and\b| last\b| in\b))",
            r"\bwe'?re (?:now )?based in",
            # "my name is Femi Adeyemi and I'm in Croydon": one capitalised word ending the clause
            Trigger(r"\bI'?m (?:now )?in(?= (?-i:[A-Z][a-z]+)\s*(?:[,.;!]|$))", "city", capitalised=True),
        ),
        ("city", "live", "based", "located"),
    ),
    Kind(
        "product",
        "Uses ",
        "customer",
        False,
        "product",
        (
            r"\b(?:I|we)(?: now| mostly| also)? use(?! to\b)",
            r"\b(?:I|we)\b[^.;]*?\band (?:also )?use(?: your| the| our)?(?= [\w-]+)(?! to\b)",
            r"\b(?:I|we)(?:'m|'re| am| are)(?: now)? using",
            r"\b(?:I|we)(?: have)? switched to(?! the \w+ (?:plan|tier))(?! \d)",
            r"^(?:(?:so|also|btw|fyi|update)[,:]?\s+)?(?:just\s+|now\s+)?switched to(?! the \w+ (?:plan|tier))(?! \d)",
            # "The printer we use is an HP LaserJet M404dn"
            r"\bthe [\w-]+ (?:I|we) (?:use|have|own|bought|run) is(?: an?| the)?",
            # "running windows 11 on a thinkpad x1 carbon": the system, then the machine
            Trigger(r"\b(?:I'?m|im|I am|we'?re|we are) running", "system"),
            r"\brunning\b.{2,40}?\bon (?:an?|my|our|the)(?= [\w-]+)",
            # "I have a Fritzbox 7590 router", "I've got the Fibre 500 broadband": a named or numbered thing
            Trigger(
                r"\b(?:I|we)(?:'ve| have)? (?:have|own|bought|got)(?: an?| the| two| a new)?"
                r"(?= (?-i:[A-Z])[\w-]*| [^\W\d_][\w-]* ?\d)",
                "device",
            ),
            # "- Product: PayDay Cloud, Business edition", "* hub: HomeLink Hub 2": a labelled line of a list
            Trigger(
                r"^(?:[-*\u2022]\s*)?(?:product|software|device|model|hub|router|modem|phone|laptop|console|printer|"
                r"app|system)\s*:(?=\s*(?-i:[A-Z])|\s*[^\W\d_]+ ?\d)",
                "device",
            ),
            # "i play on an Xbox Series X", "I work on a ThinkPad T14": what the customer does something on
            Trigger(
                r"\b(?:I|we) (?:play|game|work|stream|watch|study|listen|edit|print|record)(?: \w+)? on "
                r"(?:an?|my|our|the)(?= (?-i:[A-Z])[\w-]*)",
                "device",
            ),
            # "Microsoft Authenticator on an iPhone 13": a product written in camel case after "on a"
            Trigger(r"\bon an?(?= (?-i:[a-z]+[A-Z][\w-]*|[A-Z][a-z]+[A-Z][\w-]*)\b)", "device"),
            # "Bought a HomeLink door sensor too": a purchase stated without "I"
            Trigger(
                r"^(?:(?:also|so|and|just|oh and)[,]?\s+)?(?:just\s+)?(?:bought|ordered|installed|got)"
                r"(?: an?| the| a new)(?= (?-i:[A-Z])[\w-]*)",
                "device",
            ),
            # "crashes on my Pixel 8", "cracked screen on my galaxy s24 ultra": a named or numbered device
            Trigger(r"\bon (?:my|our)(?= (?-i:[A-Z])[\w-]*| [^\W\d_][\w-]* ?\d| [^\W\d_][\w-]* [^\W\d_]+\d)", "device"),
            # "every time I lock my iPad Air", "my MacBook Pro": a product written in camel case
            Trigger(r"\b(?:my|our)(?= (?-i:[a-z]+[A-Z][\w-]*|[A-Z][a-z]+[A-Z][\w-]*)\b)", "device"),
            # "It's the SolarEdge SE5000H model": a named thing with a model number
            Trigger(r"\b(?:it's|it is|its) (?:the |an? )(?=(?-i:[A-Z])[\w-]* [\w-]*\d[\w-]*)", "device"),
            # "it's the Eero Pro 6E you sent": what the company sent or installed
            Trigger(
                r"\bthe(?= (?-i:[A-Z])[\w-]*(?: [\w-]+){0,3} (?:that |which )?you (?:sent|shipped|gave|installed|"
                r"provided|supplied|sold)\b)",
                "device",
            ),
            # "I have the phone cover with you guys", "I hold a savings account with you": held with the company
            r"\b(?:I|we)(?:'ve| have)? (?:have|hold|got|opened)(?: an?| the| our| my)?"
            r"(?= (?:[\w-]+ ){0,2}(?:account|cover|insurance|policy|plan|subscription|contract|loan|mortgage|broadband|"
            r"line|package|membership|card|warranty|pension|tariff|bundle)s? with (?:you|your company|your bank)\b)",
            # "our integration runs on Node 20"
            Trigger(r"\b(?:our|my) (?:[\w-]+ ){0,2}(?:runs|is running|is hosted|is built|is deployed) on", "system"),
            # "We're moving our SSO from Okta to Azure AD": where it moves to
            r"\b(?:moving|migrating|switching|moved|migrated|switched)(?: our| my)?(?: [\w-]+){0,2} from "
            r"(?:[\w.-]+ ){1,3}?to(?= (?-i:[A-Z]))(?! (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
            r"january|february|march|april|may|june|july|august|september|october|november|december)\b)",
            # "My grandson set me up with the paperless billing", "signed me up for the loyalty scheme"
            r"\b(?:set (?:me|us) up (?:with|on)|signed (?:me|us) up (?:for|to))(?: the| a| an)?",
            # "added the travel pass", "I bought the 3-year cover": an add-on the customer took
            r"\b(?:added|activated|bought|purchased|took out|signed up for|subscribed to)(?: the| a| an)?"
            r"(?= (?:[\w-]+ ){0,2}(?:pass|bundle|add-on|addon|insurance|warranty|cover|protection)\b)",
            # "I get the Espresso Lover box every 2 weeks"
            r"\b(?:I|we) (?:get|receive|subscribe to|order)(?: the| a| an| our)?"
            r"(?= (?:[\w-]+ ){0,3}(?:box|boxes|subscription|bundle|magazine|kit)\b)",
        ),
        (
            "use",
            "using",
            "device",
            "software",
            "product",
            "scanner",
            "reader",
            "laptop",
            "computer",
            "printer",
            "phone",
            "tablet",
            "router",
            "model",
            "machine",
            "system",
            "browser",
            "app",
            "buy",
            "bought",
            "purchase",
            "purchased",
        ),
    ),
    Kind(
        "preference",
        "Prefers ",
        "preferences",
        False,
        "phrase",
        (
            r"\bI(?:'d| would)?(?: now| really| generally| usually| also| much| still)? prefer",
            r"\bI(?:'d| would) rather(?! you\s+\w+(?: to me| back)? in\s+(?-i:[A-Z]))(?: you)?",
            # "please reply in Spanish", "I'd rather you replied in Spanish"
            Trigger(
                r"\b(?:reply|replied|replies|respond|responded|answer|answered|write|wrote|speak|talk|communicate)"
                r"(?: to me| to us| back)? in(?= (?-i:[A-Z])[^\W\d_]+)",
                "word",
                "replies in {}",
            ),
            # "pls text me instead of emailing", "Please call me, don't email"
            Trigger(
                r"(?:^|\b(?:please|pls|plz|kindly|also|just|only|rather)(?:\s+(?:do|still|just|only|always))*\s+)"
                r"(?=(?:text|sms|call|phone|ring|e-?mail|whatsapp|message)\s+(?:me|us)\b)",
                "channel",
                "contact by {}",
            ),
            # "I have a nut allergy", "I'm allergic to penicillin"
            Trigger(r"\bI have an?(?= [\w-]+(?: [\w-]+)? allerg)", "phrase", "{}"),
            Trigger(r"\bI(?:'m| am) allergic to", "phrase", "allergic to {}"),
            # "please never send nut-based snacks", "don't ship on Fridays"
            # (not "I don't use the mobile": a statement about the customer, not a request)
            Trigger(
                r"\b(?<!I )(?<!we )(?:please )?(?:never|don't|do not)"
                r"(?= (?:send|ship|deliver|include|put|add|leave|use)\b)",
                "phrase",
                "never {}",
            ),
            # "please leave orders with the concierge", "always knock at the side door"
            Trigger(r"\b(?:please|pls|kindly|always)(?: always)?(?= (?:leave|knock|ring the bell)\b)", "phrase"),
            # "Email is best.", "a text works better"
            Trigger(
                r"^(?:(?:but|so|also|and)\s+)?(?:an? )?(?=(?:e-?mail|text|sms|phone|call|whatsapp)s?\s+"
                r"(?:is|are|works?)\s+(?:best|better|easiest|preferred|fine|great)\b)",
                "channel",
                "contact by {}",
            ),
            # "You can reach me on WhatsApp", "ring me on the landline": the channel to use
            Trigger(
                r"\b(?:reach|contact|ring|call|get hold of|find)(?: me| us)(?: best)? (?:on|via|by|through|at)"
                r"(?: the| my)?(?= (?:whatsapp|signal|telegram|e-?mail|text|sms|phone|mobile|landline)\b)",
                "channel",
                "contact by {}",
            ),
            # "send reminders by sms not email", "I'd like invoices via email"
            Trigger(
                r"\b(?:send|get|receive|like)(?: me| us)?(?= (?:the |all |any )?(?:[\w-]+ ){0,2}"
                r"(?:by|via|through|over) (?:sms|text|e-?mail|post|whatsapp|phone|letter)\b)",
                "phrase",
            ),
            # "best to text 07700 900 321 first", "easiest by email"
            Trigger(
                r"\b(?:best|easiest|better)(?: way)? (?:to|by|is)(?= (?:text|sms|call|phone|ring|e-?mail|whatsapp)\b)",
                "channel",
                "contact by {}",
            ),
            # "delivery on weekends is best for me"
            Trigger(
                r"(?:^|[,;]\s*)(?:(?:but|so|also|and)\s+)?(?=(?:[\w-]+ ){1,4}(?:is|are|works?|suits me) "
                r"(?:best|ideal|easiest)\b)",
                "head",
            ),
            # "I can only come on Tuesday or Thursday mornings", "I'm only free after 5"
            Trigger(
                r"\bI(?: can| could)? only (?:come|do|make it|be there|meet|talk|visit)|\bI'?m only (?:available|free)"
                r"|\bI(?:'m| am) (?:only )?(?:available|free|home|in|around|reachable)"
                r"(?= (?:on |in the |after |before |between |at )?(?:weekday|weekend|morning|afternoon|evening|monday|"
                r"tuesday|wednesday|thursday|friday|saturday|sunday|after|before|between)s?\b)",
                "phrase",
                "appointments {}",
            ),
            # "I'm vegan", "we are vegetarian": a diet
            Trigger(
                r"\b(?:I|we|he|she|they)(?:'m|'re|'s| am| are| is)(?: now)?(?: an?| strictly| strict)?"
                r"(?= (?:vegan|vegetarian|pescatarian|coeliac|"
                r"celiac|diabetic|lactose[- ]intolerant|gluten[- ]free|halal|kosher)\b)",
                "phrase",
                "{} diet",
            ),
            # "I need bassinet seat please", "I would like a room quiet, far from elevator": a standing request
            Trigger(
                r"\b(?:need|require|would like|'d like|requested?)(?: an?| the)?(?= (?:[\w-]+ ){0,2}(?:seat|seats|room|"
                r"bed|cot|bassinet|meal|wheelchair|assistance|gearbox|transmission)(?: [\w-]+)?"
                r"(?=\s*(?:[,.;!]|$)| please\b| and\b))",
                "needs",
            ),
            # "Please don't phone me"
            Trigger(
                r"\b(?:don't|do not|never)\s+(?=(?:text|sms|call|phone|ring|e-?mail)\s+(?:me|us)\b)",
                "channel",
                "no contact by {}",
            ),
            # "please schedule calls after 2pm SGT", "call me in the mornings"
            Trigger(
                r"\b(?:schedule|book|arrange|call|ring|phone|contact|reach)(?: me| us)?(?: only)?"
                r"(?: calls?| meetings?)?"
                r"(?= (?:after|before|between|in the (?:morning|afternoon|evening)s?|on weekdays|on weekends|"
                r"weekdays|mornings|afternoons|evenings)\b)",
                "phrase",
                "calls {}",
            ),
        ),
        (
            "prefer",
            "preference",
            "like",
            "contacted",
            "contact",
            "language",
            "time",
            "reach",
            "allergic",
            "allergy",
            "diet",
            "dietary",
            "avoid",
        ),
    ),
    Kind(
        "address",
        "Address: ",
        "archival",
        True,
        "address",
        (
            # "my new address is", "new address: Flat 5, ...", "the invoice address is changed: Hafenstraße 8, ..."
            r"\b(?:my|our|the|new|updated)(?: new| updated)? (?!(?:e-?mail|ip|mac|web|wallet|server|return|sender) )"
            r"(?:[\w-]+ )?address(?:(?: is changed| has changed to| has changed| changed to| is now| will be| is):?|:)",
            r"\bmy (?:shipping |delivery )?address to",
            # "ship it to my office at Unit 4, Brookfield Park, Cork T12 HX80"
            r"\bto (?:my|our) (?:new )?(?:office|home|house|flat|work|apartment|place)(?: address)?(?: at|:|,)?"
            r"(?=\s+(?:\S+ ){0,2}\S*\d)",
            # "our warehouse moved: Unit 12, Tilbury Trade Park", "my office is now at 5 Elm Street"
            r"\b(?:my|our) (?:new )?(?:office|warehouse|home|house|flat|shop|store|site|depot|premises|clinic)"
            r"(?: has)? (?:moved|is now|is moving|relocated)(?: to| at)?:?"
            r"(?=\s+(?:(?:flat|unit|apt|suite|apartment|building|floor)\s+\w|\d[\w/-]*,? (?-i:[A-Z])))",
            # "We're at 27 Willow Lane, Hexham NE46 3RT"
            r"\b(?:I'?m|I am|we'?re|we are|I live|we live)(?: now| still)? at(?= \d[\w/-]*,? (?-i:[A-Z]))",
        ),
        ("address", "ship", "shipped", "shipping", "send", "parcels", "deliver", "delivered", "delivery", "live"),
    ),
    Kind(
        "order",
        "Order: ",
        "archival",
        False,
        "code",
        (
            r"\b(?:my|the|our)(?: new)? order(?: number| no\.?| id)?(?: is| was| changed to| is now)",
            r"\border (?:number |no\.? )?#",
            # "Order A-99812 arrived damaged": a code with a digit, and a letter, a dash or four digits
            r"\border(?: number| no\.?| id| nr\.?| num)?:?"
            r"(?=\s+(?=[\w-]*\d)(?=[\w-]*[A-Za-z_-]|\d{4})[\w-]{3,}\b)",
        ),
        ("order",),
    ),
    Kind(
        "account",
        "Account: ",
        "archival",
        True,
        "code",
        (
            r"\b(?:my|our|the)(?: new)? (?:account|customer|client|member(?:ship)?) (?:number|id|uid|no\.?)"
            r"(?: is| changed to| is now|:)?",
            r"\baccount (?:number |id |no\.? )?#",
            # "Account: acct_9F3KQ2", "(sort code 20-45-77, account 83310452)"
            r"\baccount(?: number| no\.?| id| uid| nr\.?)?:?"
            r"(?=\s+(?=[\w-]*\d)(?=[\w-]*[A-Za-z_-]|\d{4})[\w-]{3,}\b)",
        ),
        ("account",),
    ),
    Kind(
        "reference",
        "Reference: ",
        "archival",
        False,
        "code",
        (
            # "booking reference QX7T2P", "my case number is 44817", "Tracking: 1Z999AA10123456784"
            # "patient ID PT-55821", "imei 356938035643809", "e-ticket, number is 157-..."; the
            # stored line keeps what the code is ("Reference: patient ID PT-55821")
            r"\b(?:booking|reservation|confirmation|reference|ref|case|tracking|serial|licen[cs]e|contract|"
            r"policy|claim|membership|imei|e-?ticket|ticket|patient|dispute|sort code|iban|pnr|vin|member|"
            r"voucher|warranty|return|rma|quote|shipment|parcel|student|employee|staff|ride|trip|transaction|uid|job|"
            r"repair|service|work order)"
            r"(?:,? (?:number|no\.?|code|reference|ref|id|key|nr\.?))?"
            r"(?: (?:on|for|of) (?:the|my|our) [\w-]+)?(?: is| was| is now| says| reads)?:?"
            r"(?=\s+#?(?=[\w-]*\d)(?=[\w-]*[A-Za-z_-]|\d{4})[\w-]{4,}\b)",
        ),
        (
            "booking",
            "reference",
            "reservation",
            "confirmation",
            "case",
            "tracking",
            "serial",
            "claim",
            "policy",
            "patient",
            "imei",
            "dispute",
            "ticket",
            "membership",
            "code",
            "student",
            "job",
            "ride",
        ),
    ),
    # A new surname keeps the given names on file ("surname is Gallagher btw": Name: Aoibheann Gallagher).
    Kind(
        "surname",
        "Surname: ",
        "customer",
        True,
        "name",
        (r"\b(?:my )?(?:surname|last name|family name)(?: is| has changed to| changed to|'s|:)(?: now)?",),
        ("surname",),
    ),
    Kind(
        "birthdate",
        "Date of birth: ",
        "customer",
        True,
        "date",
        (r"\b(?:date of birth|birth date|birthdate|d\.?o\.?b\.?|born on|birthday)(?: is)?:?",),
        ("birth", "born", "birthday", "dob"),
    ),
    Kind(
        "postcode",
        "Postcode: ",
        "customer",
        True,
        "postcode",
        (r"\b(?:post ?code|postal code|zip(?: code)?|eircode)(?: is| is now)?:?",),
        ("postcode", "zip", "postal"),
    ),
    # "The card ends in 4417", "The new card arrived, it ends in 9082"
    Kind(
        "card",
        "Card ending ",
        "customer",
        True,
        "number",
        (r"\bcard\b[^.;]*?\b(?:ends?|ending)(?: in| with)?(?= \d{4}\b)",),
        ("card",),
    ),
    # Anything else the customer names as theirs: "My insurer is Bupa", "our tenant is kestrelhealth.onmicrosoft.com".
    # Its line is "<Noun>: <value>", one per noun (``Fact.label``).
    Kind(
        "detail",
        "",
        "customer",
        True,
        "detail",
        (
            r"\b(?:my|our) (?P<noun>(?-i:[a-z]+ )?(?-i:[a-z]+)) (?:is|is now|changed to|has changed to)"
            r"(?: now| called)?"
            r"(?= (?:an? |the )?(?:(?-i:[A-Z0-9])|[\w-]+\.[a-z]{2,}\b))",
            # "Our dog Bolt (a 4 year old beagle)", "my daughter, Ana,"
            Trigger(
                r"\b(?:my|our) (?P<noun>dog|cat|puppy|kitten|horse|rabbit|parrot|pet|son|daughter|husband|wife|"
                r"partner)(?: is called| called| named|,)?(?= (?-i:[A-Z])[^\W\d_])",
                "name",
            ),
            # "I attend the Clifton branch", "at your Grünerløkka location": the branch or site the customer uses
            Trigger(
                r"\b(?:I|we) (?:attend|go to|use|visit|train at|work out at|shop at)(?: your| the)?"
                r"(?= (?-i:[A-Z])[\w-]*(?: (?-i:[A-Z])[\w-]*)? "
                r"(?P<noun>branch|location|site|club|gym|campus|studio|store)\b)"
                r"|\bat your(?= (?-i:[A-Z])[\w-]*(?: (?-i:[A-Z])[\w-]*)? "
                r"(?P<noun2>branch|location|site|club|gym|campus|studio|store)\b)",
                "name",
            ),
            # "we're going from 9 Elm Row, Edinburgh EH7 4AA to 52 Kelvin Drive, Glasgow G20 8QG"
            Trigger(
                r"\b(?:moving|going|relocating|move|moves)(?: house| home)? from(?= \d[\w/-]*,? (?-i:[A-Z]))",
                "from_address",
                label="Moving from",
            ),
            Trigger(
                r"\b(?:moving|going|relocating|move|moves)(?: house| home)? from \d[^.;]*? to"
                r"(?= \d[\w/-]*,? (?-i:[A-Z]))",
                "address",
                label="Moving to",
            ),
            # "the doctor has changed my tablets to amlodipine 10mg": what the customer's thing is now
            r"\b(?:changed|switched|moved|updated) (?:my|our) (?P<noun>(?-i:[a-z]+)) to(?= (?:an? |the )?[\w-]*\d|"
            r" (?-i:[a-z]+ [\w-]*\d))",
            # "Kwabena Asante, MSc Data Science, second year": a degree and its subject
            Trigger(
                r"(?<![\w-])(?=(?-i:MSc|BSc|BA|MA|MEng|BEng|PhD|MBA|LLB|LLM|MPhil|BEd|MEd) (?-i:[A-Z]))",
                "phrase",
                label="Course",
            ),
            # "dad of Freja in year 4"
            Trigger(
                r"\b(?:dad|mum|mom|father|mother|parent|guardian) (?:of|to)(?= (?-i:[A-Z])[^\W\d_])",
                "name",
                label="Child",
            ),
            # "Freja moved to class 4C", "switched to team B2"
            Trigger(
                r"\b(?:moved|changed|switched|transferred|is now in|is in) (?:to )?(?P<noun>class|room|group|team|ward|"
                r"department|section|grade|form)(?= [\w-]*\d[\w-]*\b)",
                "token",
            ),
        ),
        (),
    ),
)
_KIND = {kind.key: kind for kind in KINDS}
_NOT_DETAIL_VALUES = _wordset("i i'm it it's this that we you they he she there")
# Nouns that other kinds read, or that name a problem rather than something the customer has.
_NOT_DETAILS = _wordset(
    """
    name surname email e-mail phone mobile number address order account plan tier subscription company employer
    business organisation organization card postcode issue problem question concern error request complaint ticket
    bill invoice english german french spanish language guess point worry fault mistake bad apologies reference
    booking policy claim seat seats licence license password pin username login mind
    """
)
_RESOLUTION_WORDS = _wordset(
    "fix fixed fixes solution solved solve resolve resolved resolution workaround worked work did do change changed "
    "refund refunded happened happen cause caused reason why outcome"
)


@dataclass(frozen=True)
class Fact:
    kind: Kind
    value: str
    changed: bool  # the sentence says the value changed
    label: str = ""  # a detail's noun: "Insurer" in "Insurer: Bupa"

    @property
    def prefix(self) -> str:
        return f"{self.label}: " if self.label else self.kind.prefix

    @property
    def line(self) -> str:
        return f"{self.prefix}{self.value}"


# ----------------------------------------------------------------------------------------------
# Reading the customer's text


def sentences(text: str) -> list[str]:
    """The text's sentences, keeping their end mark; abbreviations like "St." do not end a sentence, an emoji does."""
    protected = _ABBREVIATIONS.sub(lambda m: m.group(0)[:-1] + "\u2024", _EMOJI.sub("\n", text))
    parts = re.split(r"(?<=[.!?])\s+|\n+", protected)
    parts = [part.replace("\u2024", ".").strip() for part in parts]
    return [part for part in parts if re.search(r"[^\W_]", part)]


def is_question(sentence: str) -> bool:
    """A sentence that asks for something. A request to change a detail ("Could you update my address to X?")
    is not: it states the new value."""
    text = sentence.strip()
    if _CHANGE_REQUEST.search(text):
        return False
    return text.endswith("?") or bool(_QUESTION_START.match(text)) or bool(_QUESTION_PHRASE.search(text))


def _words_until_boundary(text: str, *, max_words: int, boundary: frozenset[str] = _BOUNDARY_WORDS) -> list[str]:
    words: list[str] = []
    for raw in text.split():
        word = raw.strip("\"'()")
        cut = bool(re.search(r"[,;:!?]$", word)) or (word.endswith(".") and not _ABBREVIATIONS.fullmatch(word))
        bare = word.rstrip(",;:!?.")
        # An acronym is part of a name even when it spells a boundary word ("Fjordline AS", "Acme IT").
        if not bare or (bare.casefold() in boundary and not (len(bare) > 1 and bare.isupper())):
            break
        words.append(bare)
        if cut or len(words) >= max_words:
            break
    while words and words[-1].casefold() in {"the", "a", "an", "to", "of", "at", "in", "on", "my", "our"}:
        words.pop()
    return words


def _read_name(text: str) -> str:
    words: list[str] = []
    for raw in text.split()[:6]:
        bare = raw.strip("\"'()").rstrip(",;:!?.")
        folded = bare.casefold()
        if not bare or not re.fullmatch(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*", bare):
            break
        if folded in _NAME_STOP:
            break
        # A name is capitalised words with their particles ("Aoife Ní Bhriain"); all lower case, up to three words.
        particle = folded in _NAME_PARTICLES and bool(words)
        if not (particle or bare[0].isupper() or (text[:1].islower() and len(words) < 3)):
            break
        words.append(bare)
        if raw.rstrip()[-1:] in ",;:!?.":
            break
    while words and words[-1].casefold() in _NAME_PARTICLES:
        words.pop()
    if words and all(word.islower() for word in words):
        words = [word[:1].upper() + word[1:] for word in words]
    return " ".join(words[:5])


_CHANNELS = {
    "text": "text",
    "sms": "text",
    "message": "text",
    "call": "phone",
    "phone": "phone",
    "ring": "phone",
    "mobile": "phone",
    "landline": "phone",
}
# Words after a model name that still belong to it: "Galaxy S24 Ultra", "Pixel 8 Pro", "iPhone 15 Pro Max".
_MODEL_SUFFIXES = _wordset("pro max plus ultra mini lite air se fe xl edge neo note")
# Capitalised words a device is never called: "I've got Error 500", "on my Monday invoice".
_NOT_DEVICES = _wordset("error problem issue ticket order invoice refund account bill question")


_DEVICE_NOUNS = _wordset(
    "mesh router modem phone laptop printer tablet app reader scanner camera watch tv console speaker terminal "
    "headset monitor server sensor hub thermostat doorbell bulb bulbs plug camera lock"
)


def _read_device(text: str) -> str:
    """A named or numbered thing: "Pixel 8", "Fritzbox 7590 router", "Eero 6 mesh" (then the verb is not read)."""
    raw = [w.strip("\"'()") for w in text.split()[:6]]
    words: list[str] = []
    for index, word in enumerate(raw):
        bare = word.rstrip(",;:!?.")
        following = raw[index + 1] if index + 1 < len(raw) else ""
        named = bool(bare) and (bare[0].isupper() or any(c.isdigit() for c in bare) or bare[1:2].isupper())
        if not words and (bare.casefold() in _NOT_DEVICES or bare.casefold() in _NOT_NAMES):
            break
        if (
            named
            or (not words and any(c.isdigit() for c in following))
            or (words and bare.casefold() in _MODEL_SUFFIXES)
        ):
            words.append(bare)
        elif words and bare.casefold() in _DEVICE_NOUNS:
            words.append(bare)
            break
        elif words and bare.isalpha() and bare.islower() and following.rstrip(",;:!?.").casefold() in _DEVICE_NOUNS:
            words.append(bare)  # "HomeLink door sensor"
            continue
        else:
            break
        if bare != word:  # punctuation ends it
            break
    return " ".join(words)


def _read_value(reader: str, text: str) -> str:
    text = text.lstrip(" :#")
    if reader == "seats":
        found = re.match(
            r"(\d[\d,]*) ((?:[a-z-]+ )?(?:seats|licen[cs]es|agents|users|desks|employees))\b", text, re.IGNORECASE
        )
        return f"{found.group(1)} {found.group(2)}" if found else ""
    if reader == "role":
        found = _compiled(rf"^((?:[\w-]+ ){{0,2}}{_TITLES})(?=\s*(?:[,.;!]|$|\s(?:at|for|of|with|@|in)\b))").match(text)
        return found.group(1) if found else ""
    if reader == "lowername":  # "theo van dijk": no word of it an ordinary English word
        lower = re.match(r"[a-z]+(?: [a-z]+){1,2}(?=,)", text)
        common = _STOPWORDS | _BOUNDARY_WORDS | _NOT_NAMES | _NAME_STOP | _wordset("for with about after before")
        ordinary = [w for w in (lower.group(0).split() if lower else []) if w not in _NAME_PARTICLES]
        if not lower or any(w in common or re.search(r"(?:ing|ed|ly|s)$", w) for w in ordinary):
            return ""
        return _read_name(lower.group(0))
    if reader == "city":
        place = re.match(r"[A-Z][a-z]+", text)
        months = _wordset("january february march april may june july august september october november december")
        city = place.group(0) if place else ""
        if not city or city.casefold() in _NOT_NAMES | months or _compiled(rf"^{_ROLES}$").match(city):
            return ""
        return city
    if reader == "word":
        found = re.match(r"[^\W\d_]+", text)
        return found.group(0) if found else ""
    if reader == "channel":
        found = re.match(
            r"(text|sms|call|phone|ring|e-?mail|whatsapp|message|mobile|landline|signal|telegram)\b",
            text,
            re.IGNORECASE,
        )
        if not found:
            return ""
        word = found.group(1).casefold()
        return _CHANNELS.get(word, "email" if word.replace("-", "") == "email" else word)
    if reader == "name":
        return _read_name(text)
    if reader == "email":
        found = re.match(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text)
        return found.group(0).rstrip(".") if found else ""
    if reader == "phone":
        found = re.match(r"\+?\d[\d ()./-]{5,}\d", text)
        return " ".join(found.group(0).split()) if found else ""
    if reader == "code":
        found = re.match(r"#?([A-Za-z0-9][\w/-]{2,40})", text)
        code = found.group(1).rstrip("-/") if found else ""
        return code if re.search(r"\d", code) else ""
    if reader == "plan":
        found = re.match(
            r"(?:(?:the|a|our)\s+)?([\w -]{2,30}?) (plan|tier|subscription|package|edition|membership|pass)\b",
            text,
            re.IGNORECASE,
        )
        if found:
            return f"{found.group(1).strip()} {found.group(2).casefold()}"
        return " ".join(_words_until_boundary(text, max_words=4))
    if reader == "address":
        # An address holds commas: it runs to the end of the sentence or to a new clause (", have been there...").
        found = re.match(
            r"(.+?)(?=\s+(?:and|but|so|please|from now on|now|instead|if|for|because|which|when)\b|[.!?;](?:\s|$)|"
            r",\s+(?-i:[a-z])|\n|$)",
            text,
            re.IGNORECASE,
        )
        address = found.group(1).strip(" ,") if found else ""
        return address if re.search(r"\d", address) else ""  # "the address is wrong" is not an address
    if reader == "from_address":  # "9 Elm Row, Edinburgh EH7 4AA to 52 Kelvin Drive": the first of two
        found = re.match(r"(.+?)\s+to\s+\d", text)
        return _read_value("address", found.group(1)) if found else ""
    if reader == "token":  # "4C", "B2"
        found = re.match(r"[\w-]*\d[\w-]*", text)
        return found.group(0) if found else ""
    if reader == "number":
        found = re.match(r"(\d[\d,]*)\b", text)
        return found.group(1) if found else ""
    if reader == "date":
        found = re.match(
            r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}-\d{2}-\d{2}|\d{1,2}(?:st|nd|rd|th)? (?:of )?[A-Za-z]{3,9},? \d{4}|"
            r"[A-Za-z]{3,9} \d{1,2}(?:st|nd|rd|th)?,? \d{4}",
            text,
        )
        return found.group(0) if found else ""
    if reader == "postcode":
        found = re.match(r"(\d{5}(?:-\d{4})?|[A-Za-z0-9]{2,4}(?: [A-Za-z0-9]{3})?)\b", text)
        code = found.group(1).upper() if found else ""
        return code if re.search(r"\d", code) else ""
    if reader == "head":
        # "delivery on weekends is best for me": the words before "is best"
        found = re.match(r"((?:[\w-]+ ){0,4}?[\w-]+) (?:is|are|works?|suits me) ", text, re.IGNORECASE)
        return found.group(1) if found else ""
    if reader == "detail":
        words = _words_until_boundary(re.sub(r"^(?:an?|the)\s+", "", text), max_words=4, boundary=_PRODUCT_BOUNDARY)
        # "Our team is 5 people" is a count, not a name: a value opening with a bare number is not read.
        if not words or words[0].casefold() in _NOT_NAMES | _NOT_DETAIL_VALUES or words[0].isdigit():
            return ""
        return " ".join(words)
    if reader == "product":
        return " ".join(_words_until_boundary(text, max_words=8, boundary=_PRODUCT_BOUNDARY))
    if reader == "device":
        return _read_device(text)
    if reader == "needs":  # "a child seat and automatic gearbox please": one request of several things
        return " ".join(_words_until_boundary(text, max_words=8, boundary=_BOUNDARY_WORDS - {"and"}))
    if reader == "system":
        return " ".join(_words_until_boundary(text, max_words=8, boundary=_SYSTEM_BOUNDARY))
    return " ".join(_words_until_boundary(text, max_words=8))


def _shouted(sentence: str) -> bool:
    """Written all in capitals: every word looks like a name there, so capitals say nothing."""
    letters = [c for c in sentence if c.isalpha()]
    return len(letters) >= 4 and all(c.isupper() for c in letters)


def _phone_context(before: str) -> bool:
    """A phone-shaped number is the customer's phone when a word about calling comes before it ("you can reach me
    on", "my number changed, it's") and no word saying it is some other number ("e-ticket, number is", "account")."""
    words = re.findall(r"[\w-]+", before.casefold())[-8:]
    strong = _wordset("phone mobile cell landline reach reachable contactable call ring text whatsapp sms tel contact")
    other = _wordset(
        "account ticket e-ticket order imei card booking policy claim reference ref serial meter reading sort invoice "
        "case tracking iban patient member id membership reservation confirmation parcel code"
    )
    last_strong = max((i for i, w in enumerate(words) if w in strong), default=-1)
    last_other = max((i for i, w in enumerate(words) if w in other), default=-1)
    if last_strong >= 0:
        return last_strong > last_other
    return "number" in words and last_other < 0


def _about_someone_else(before: str) -> bool:
    """An email address the customer wrote to or heard from, not their own: "I emailed support@...", "from x@..."."""
    return bool(
        re.search(
            r"\b(?:e-?mailed|wrote to|write to|sent(?: \w+){0,2} to|forwarded(?: \w+){0,2} to|cc'?d?|copied|from)"
            r"\s*:?\s*$",
            before,
            re.IGNORECASE,
        )
    )


def _third_party(sentence: str) -> bool:
    """A sentence about someone else's details: "his", "her", "their" ("that's his not mine"), "my brother's"."""
    return bool(
        re.search(
            r"\b(?:his|her|hers|their|theirs)\b|\b(?:partner|husband|wife|brother|sister|son|daughter|colleague|friend|"
            r"flatmate|roommate|boss|manager|mum|mom|dad|father|mother)'s\b",
            sentence,
            re.IGNORECASE,
        )
    )


def _code_label(matched: str, *, shouted: bool = False) -> str:
    """What a code is, from the words that introduced it: "patient ID", "booking" (from "booking reference"),
    "transfer" (from "reference on the transfer was"); "" for a bare "reference"."""
    framing = {
        "is",
        "was",
        "now",
        "on",
        "for",
        "of",
        "the",
        "my",
        "our",
        "number",
        "no",
        "reference",
        "ref",
        "nr",
        "says",
    }
    framing |= {"reads"}
    words = [w for w in re.findall(r"[\w-]+", matched) if w.casefold() not in framing]
    return " ".join(w if w.isupper() and len(w) <= 4 and not shouted else w.casefold() for w in words)


def facts_in(body: str, asked: str = "") -> list[Fact]:
    """The facts the customer states in a message, in order; questions are skipped. ``asked`` is the staff message
    the customer answers, when it asked for something ("What's your account number?" / "It's 600 482 913")."""
    facts: list[Fact] = []

    def add(kind: Kind, value: str, changed: bool, label: str = "") -> None:
        if not value or len(value) < 2:
            return
        for index, fact in enumerate(facts):
            if fact.kind != kind or fact.label != label:
                continue
            if fact.value == value or (kind.key == "product" and fact.value.startswith(value + " ")):
                return
            if kind.key == "product" and value.startswith(fact.value + " "):  # "Fibre 500" -> "Fibre 500 broadband"
                facts[index] = Fact(kind, value, changed, label)
                return
        facts.append(Fact(kind, value, changed, label))

    parts = sentences(body)
    # A sentence that only greets ("Olá.", "Namaste.") does not count: a name may open the next one.
    opening = next((n for n, part in enumerate(parts) if not _compiled(rf"^{_GREETING}[\W_]*$").match(part)), 0)
    for number, sentence in enumerate(parts):
        if is_question(sentence):
            # "And she's now gluten-free, doctor confirmed, can you flag that for lunches?": the request follows a
            # statement
            sentence = re.split(r",\s*(?:so\s+)?(?:can|could|would|will) you\b", sentence, maxsplit=1, flags=re.I)[0]
            if not sentence or sentence.endswith("?") or is_question(sentence):
                continue
        changed = bool(_CHANGE_MARKER.search(sentence)) or bool(_CHANGE_REQUEST.search(sentence))
        # "it happens on my MacBook Pro too now": a second one, not a replacement
        changed = changed and not _ADDITION.search(sentence)
        shouted = _shouted(sentence)
        bare = _BARE_NAME.match(sentence) if number in (opening, len(parts) - 1) and not shouted else None
        if bare and bare.group("name").split()[0].casefold() not in _NOT_NAMES:
            add(_KIND["name"], _read_name(bare.group("name")), changed)  # "Tariq Aziz. The app crashes ..."
        for kind in KINDS:
            for trigger in kind.triggers:
                pattern, reader, template, capitalised, label = (
                    (trigger.pattern, trigger.reader, trigger.template, trigger.capitalised, trigger.label)
                    if isinstance(trigger, Trigger)
                    else (trigger, kind.reader, "{}", False, "")
                )
                if capitalised and shouted:
                    continue
                for found in _compiled(pattern).finditer(sentence):
                    before, rest = sentence[: found.start()], sentence[found.end() :]
                    if kind.key == "phone" and found.start() == found.end() and not _phone_context(before):
                        continue  # a number shaped like a phone, with nothing saying it is one
                    if kind.key == "email" and _about_someone_else(before):
                        continue
                    if kind.key in ("email", "phone") and _third_party(sentence):
                        continue  # "my partner Rui set up his own account, rui.c@sapo.pt, that's his not mine"
                    value = _read_value(reader, rest)
                    if reader == "name" and shouted:
                        value = " ".join(word[:1] + word[1:].lower() for word in value.split())
                    if (
                        (kind.key in ("name", "surname") or reader == "name")
                        and value
                        and value.split()[0].casefold() in _NOT_NAMES
                    ):
                        continue  # "I'm Sorry", "It's Monday"
                    noun = found.groupdict().get("noun") or found.groupdict().get("noun2") or ""
                    if (
                        kind.key == "detail"
                        and not label
                        and (not value or noun.casefold() in _NOT_DETAILS or noun.split()[-1] in _NOT_DETAILS)
                    ):
                        continue
                    fact_label = label or (noun[:1].upper() + noun[1:] if kind.key == "detail" else "")
                    if kind.key == "reference" and value:
                        value = f"{_code_label(found.group(0), shouted=shouted)} {value}".strip()
                    plan = re.match(r"(?:(?:the|a|our)\s+)?([\w-]{2,20}) plan\b", value, re.IGNORECASE)
                    if kind.key == "product" and plan:  # "I use the free plan" names a plan, not a product
                        add(_KIND["plan"], f"{plan.group(1)} plan", changed)
                        continue
                    if kind.key == "preference" and reader == "head" and value.casefold() in {*_CHANNELS, "email"}:
                        continue  # "Email is best." is read as a contact channel
                    if kind.key == "name" and value:
                        # "It's Kapoor, Arjun Kapoor, with two o's": the name spelled out in full after the short one
                        after = rest.lstrip(" :#")[len(value) :] if rest.lstrip(" :#").startswith(value) else ""
                        fuller = _read_name(after.lstrip(" ,")) if after.startswith(",") else ""
                        if len(fuller.split()) > len(value.split()) and value in fuller.split():
                            value, after = fuller, after.lstrip(" ,")[len(fuller) :]
                    add(kind, template.format(value, noun=noun) if value else "", changed, fact_label)
                    if kind.key == "name" and value:  # "Priya Raman from Northwind Logistics"
                        role = _ROLE_AFTER_NAME.match(after)
                        if role:  # "Ingrid Solberg, ops lead at Fjordline Studio"
                            add(_KIND["role"], role.group("role"), changed)
                        employer = _NAME_THEN_EMPLOYER.match(after)
                        if employer:
                            add(_KIND["employer"], _read_value("phrase", after[employer.end() :]), changed)
                        # "Tom Okonjo, 3 Hawthorn Close, Didcot OX11 7GH."
                        # "Chloé Martin, flat 3B, 18 Rue des Lilas, Lyon."
                        if _compiled(r"^,\s*(?:\d[\w/-]*,? (?-i:[A-Z])|(?:flat|unit|apt|apartment|suite) \w+,)").match(
                            after
                        ):
                            add(_KIND["address"], _read_value("address", after.lstrip(" ,")), changed)
    signed = _SIGN_OFF.search(body.strip())
    name = (signed.group("name") or signed.group("signed")) if signed else ""
    if name and name.split()[0].casefold() not in _NOT_NAMES and not _shouted(body):
        add(_KIND["name"], _read_name(name), False)  # "Thanks,\nTariq Aziz"
    for fact in _answers_to(asked, body) if asked else []:
        add(fact.kind, fact.value, fact.changed, fact.label)
    return facts


# What a staff question asks for, by its words ("What's your account number?", "Can I have your date of birth?").
_REPLY_WORDS = {
    "email": "email",
    "e-mail": "email",
    "phone": "phone",
    "mobile": "phone",
    "landline": "phone",
    "address": "address",
    "order": "order",
    "account": "account",
    "birth": "birthdate",
    "dob": "birthdate",
    "birthday": "birthdate",
    "postcode": "postcode",
    "zip": "postcode",
    "eircode": "postcode",
    "surname": "surname",
    **{
        word: "reference"
        for word in [
            "booking",
            "reservation",
            "confirmation",
            "reference",
            "case",
            "tracking",
            "serial",
            "policy",
            "claim",
            "membership",
            "imei",
            "ticket",
            "e-ticket",
            "patient",
            "dispute",
            "iban",
            "pnr",
            "vin",
            "voucher",
            "warranty",
            "student",
            "job",
        ]
    },
}
_ASKED_NAME = re.compile(
    r"\b(?:who (?:am I|are you|is this)|who's this|your (?:full )?name|(?:first|full) name|holder(?:'s)? name)\b",
    re.IGNORECASE,
)
# "Which authenticator are you using?", "which router model is it": the reply names a product
_ASKED_PRODUCT = re.compile(
    r"\b(?:which|what)(?: kind of| type of| make of| make and model of)? (?:the |your )?([a-z]+)(?: model)?"
    r"(?: is it| are you using| do you (?:use|have)| have you got| did you buy)",
    re.IGNORECASE,
)
# "is it a fibre or copper line?", "Matte or glossy again?": the reply picks one of two
_ASKED_CHOICE = re.compile(
    r"\b(?:an? |the )?(?P<a>[a-z][\w-]*) or (?:an? |the )?(?P<b>[a-z][\w-]*)(?: (?!again\b)(?P<noun>[a-z]+))?"
    r"(?: again| instead| this time)?\?",
    re.IGNORECASE,
)
_REPLY_LEAD = re.compile(
    r"^(?:(?:it's|its|it is|that's|that is|sure|yes|yeah|yep|ok|okay|sorry|hi|hello|hey|thanks|thank you|so|um|"
    r"i think|i believe)\b[,!.:]?\s*)+",
    re.IGNORECASE,
)


def _asked_for(staff: str) -> list[tuple[Kind, str]]:
    """What a staff message asks the customer for, in the order it asks: a kind and the word that asked ("IMEI"),
    or the detail kind and a noun ("Which workspace?" -> Workspace)."""
    asking = " ".join(s for s in sentences(staff) if s.endswith("?") or re.search(r"\bplease\b", s, re.IGNORECASE))
    found: list[tuple[int, Kind, str]] = [(m.start(), _KIND["name"], "") for m in _ASKED_NAME.finditer(asking)]
    for word in re.finditer(r"[\w-]+", asking):
        key = _REPLY_WORDS.get(word.group(0).casefold())
        if re.match(r"\s*holder", asking[word.end() :], re.IGNORECASE):
            continue  # "the account holder's name" asks for a name
        if key and not any(start == word.start() for start, _, _ in found):
            label = word.group(0) if key == "reference" else ""
            if key == "surname" or not (key == "name" and found):
                found.append((word.start(), _KIND[key], label))
    for noun in re.finditer(r"\b(?:which|what(?:'s| is)?) (?:the |your )?([a-z]+)\?", asking, re.IGNORECASE):
        if noun.group(1).casefold() not in _REPLY_WORDS and noun.group(1).casefold() not in _NOT_DETAILS:
            found.append((noun.start(1), _KIND["detail"], noun.group(1).capitalize()))
    for product in _ASKED_PRODUCT.finditer(asking):
        if product.group(1).casefold() not in _REPLY_WORDS:
            found.append((product.start(1), _KIND["product"], ""))
    for choice in _ASKED_CHOICE.finditer(asking):
        options = f"choice:{choice.group('a')}|{choice.group('b')}:{choice.group('noun') or ''}"
        found.append((choice.start(), _KIND["preference"] if not choice.group("noun") else _KIND["detail"], options))
    return [(kind, label) for _, kind, label in sorted(found, key=lambda row: row[0])]


def _reply_value(kind: Kind, text: str, rest: str) -> str:
    """The value of one kind at the start of a piece of a reply ("Mateus Oliveira", "03/09/1991", "55-1234")."""
    if kind.key in ("name", "surname"):
        words = text.split()
        name = _read_name(text)
        lower = all(word.islower() for word in words)
        if not name or len(name.split()) != len(words) or len(words) > 4 or (lower and len(words) < 2):
            return ""
        return "" if words[0].casefold() in _NOT_NAMES else name
    if kind.key == "address":
        starts = _compiled(r"(?:\d[\w/-]*,? (?-i:[A-Z])|(?:flat|unit|apt|suite|apartment)\b)").match(text)
        return _read_value("address", rest) if starts else ""
    if kind.key in ("order", "account", "reference"):
        found = re.match(r"#?(\d{2,}(?: \d{2,})+(?![\w-])|[A-Za-z0-9][\w/-]*)", text)
        code = found.group(1) if found else ""
        return code if re.search(r"\d", code) else ""
    if kind.key == "product":  # "Hub 4", "Microsoft Authenticator on an iPhone 13"
        return _read_device(text) if len(text.split()) <= 8 else ""
    if kind.key == "detail":
        return text if re.fullmatch(r"[\w.-]+(?: [\w.-]+){0,2}", text) and text.casefold() not in _NOT_NAMES else ""
    if kind.key == "email":
        found = re.search(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text)
        return found.group(0) if found else ""
    return _read_value(kind.reader, text)


def _answers_to(staff: str, body: str) -> list[Fact]:
    """Facts in a reply to a staff question, read in the order the question asked for them: "Can I have your name and
    date of birth?" / "Mateus Oliveira, 03/09/1991"."""
    cleaned = _EMOJI.sub("\n", body)
    pieces = [piece.strip() for piece in re.split(r"(?<=[,;.!?])\s+|\n+", cleaned) if piece.strip()]
    # Where each piece starts: an address runs on over the pieces after it ("14 Quay Street, Galway H91 X2Y3").
    starts, at = [], 0
    for piece in pieces:
        at = cleaned.index(piece, at)
        starts.append(at)
    used: set[int] = set()
    facts: list[Fact] = []
    for kind, label in _asked_for(staff):
        for index, piece in enumerate(pieces):
            if index in used:
                continue
            text = _REPLY_LEAD.sub("", piece).rstrip(".,;!?")
            if label.startswith("choice:"):  # "Hub 4. fibre" after "is it a fibre or copper line?"
                _, options, noun = label.split(":")
                first = text.split()[0].casefold() if text.split() else ""
                if first in options.casefold().split("|"):
                    used.add(index)
                    facts.append(Fact(kind, first, False, noun.capitalize()))
                    break
                continue
            value = _reply_value(kind, text, _REPLY_LEAD.sub("", cleaned[starts[index] :]))
            if not value:
                continue
            used.add(index)
            if kind.key == "reference" and label:
                value = f"{_code_label(label)} {value}"
            facts.append(Fact(kind, value, False, label if kind.key == "detail" else ""))
            following = _REPLY_LEAD.sub("", pieces[index + 1]).rstrip(".,;!?") if index + 1 < len(pieces) else ""
            full = _reply_value(_KIND["name"], following, following) if kind.key == "surname" and following else ""
            if len(full.split()) > 1 and full.split()[-1] == value:  # "Zieliński, Tomasz Zieliński"
                used.add(index + 1)
                facts.append(Fact(_KIND["name"], full, True))
            break
    return facts


def keywords(text: str, limit: int = 6) -> list[str]:
    """The longest distinct content words, in a stable order: the offline model's search terms."""
    words = {w for w in re.findall(r"[^\W_][\w'-]{2,}", text.casefold()) if w not in _STOPWORDS}
    return sorted(words, key=lambda w: (-len(w), w))[:limit]


def _stem(word: str) -> str:
    word = word.casefold().strip("'-")
    if word.endswith("ies") and len(word) > 5:
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def _terms(text: str) -> set[str]:
    return {_stem(w) for w in re.findall(r"[^\W_][\w'-]*", text.casefold()) if w not in _STOPWORDS and len(w) > 1}


def _shares_stem(term: str, have: set[str]) -> bool:
    """A word of five letters or more that starts a word it is compared with, or the reverse: "deliver" and
    "delivery", "install" and "installation"."""
    return len(term) >= 5 and any(len(word) >= 5 and (word.startswith(term) or term.startswith(word)) for word in have)


def _label_of(value: str) -> str:
    """The words before a reference's code: "patient ID" in "patient ID PT-55821"."""
    return " ".join(value.split()[:-1])


# "Where do invoices get sent?", "where should the box go?": a destination, an address or an email address.
_WHERE_TO = re.compile(
    r"^where\b.*\b(?:go|goes|going|sent|send|ship|shipped|shipping|deliver|delivered|post|posted)\b", re.IGNORECASE
)
# "how should you get hold of me?": a way to contact the customer.
_HOW_TO_REACH = re.compile(r"\b(?:get hold of|get in touch|reach|contact)\b", re.IGNORECASE)


def _asked_kinds(question: str) -> list[Kind]:
    words = {w.casefold() for w in re.findall(r"[\w-]+", question)}
    words |= {w[:-1] for w in words if w.endswith("s") and not w.endswith("ss")}  # "devices" asks for a device
    kinds = [kind for kind in KINDS if words & set(kind.asked_by)]
    return kinds + [kind for kind in _form_kinds(question) if kind not in kinds]


def _form_kinds(question: str) -> list[Kind]:
    """Kinds a question asks for by its form rather than a word: "Where do invoices get sent?" (a destination)."""
    keys = (["address", "email"] if _WHERE_TO.search(question.strip()) else []) + (
        ["phone", "email", "preference"] if _HOW_TO_REACH.search(question) else []
    )
    return [_KIND[key] for key in dict.fromkeys(keys)]


# ----------------------------------------------------------------------------------------------
# The backend


def _block_text(system: str, label: str) -> str:
    match = re.search(rf"<{label} [^>]*>\n(.*?)\n</{label}>", system, re.DOTALL)
    return match.group(1) if match else ""


def _block_lines(system: str, label: str) -> list[str]:
    """The block's lines, without its description (what the block is for, not a fact)."""
    lines = [line.strip() for line in _block_text(system, label).splitlines() if line.strip()]
    return [line for line in lines if line not in _BLOCK_DESCRIPTIONS]


def _call(step: int, index: int, name: str, *, request_heartbeat: bool = True, **arguments: Any) -> ToolCallRequest:
    arguments["request_heartbeat"] = request_heartbeat
    return ToolCallRequest(id=f"offline-{step}-{index}", name=name, arguments=json.dumps(arguments))


_STAFF_MESSAGE = re.compile(r"^\[[^\]]*\] Support staff(?: \([^)]*\))? wrote to the customer: (?P<text>.*)$", re.DOTALL)


def _staff_question(history: list[dict[str, Any]]) -> str:
    """The staff message just before the customer's, when it asks something: the customer's message answers it."""
    last = history[-1] if len(history) > 1 else {}
    found = _STAFF_MESSAGE.match(str(last.get("content") or "")) if last.get("role") == "system" else None
    asks = found and (
        "?" in found.group("text")
        or re.search(r"\bplease (?:confirm|send|provide|give|share|tell)\b", found.group("text"), re.IGNORECASE)
    )
    return found.group("text") if found and asks else ""


# A reference the staff gave the customer: "For reference, your membership ID is CW-3307."
_TOLD_REFERENCE = re.compile(
    r"\byour (?:new )?(?P<label>membership|member|booking|reservation|case|claim|policy|customer|reference|ticket|"
    r"confirmation|tracking)(?: (?:id|number|no\.?|reference|ref|code))? is(?: now)?:? "
    r"#?(?P<code>(?=[\w-]*\d)(?=[\w-]*[A-Za-z_-]|\d{4})[A-Za-z0-9][\w-]{3,})\b",
    re.IGNORECASE,
)


def _staff_told(history: list[dict[str, Any]]) -> list[Fact]:
    """References in the staff message just before the customer's: the customer was told them, they are theirs."""
    last = history[-1] if len(history) > 1 else {}
    found = _STAFF_MESSAGE.match(str(last.get("content") or "")) if last.get("role") == "system" else None
    if not found:
        return []
    return [
        Fact(_KIND["reference"], f"{m.group('label').casefold()} {m.group('code').rstrip('-')}", False)
        for m in _TOLD_REFERENCE.finditer(found.group("text"))
    ]


def _body(event: str) -> tuple[str, re.Match[str] | None]:
    match = _MESSAGE_EVENT.match(event)
    return (match.group("body") if match else event).strip(), match


class OfflineBackend:
    name = OFFLINE_NAME

    def complete(self, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> LLMResponse:
        available = {tool["function"]["name"] for tool in tools}
        event_at = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=len(messages) - 1)
        event = str(messages[event_at].get("content") or "") if messages else ""
        exchange = messages[event_at + 1 :]
        system = str(messages[0].get("content") or "") if messages else ""
        step = sum(1 for m in exchange if m.get("role") == "assistant")
        solved = _SOLVED_EVENT.match(event)
        replied = any(c["function"]["name"] == "send_message" for m in exchange for c in m.get("tool_calls") or [])
        asked = _staff_question(messages[:event_at])
        told = _staff_told(messages[:event_at])
        if solved:
            response = self._consolidate(solved, system, step) if not exchange else _stop("Core memory is current.")
        elif not exchange:
            response = self._first_step(event, system, available, asked, told)
        elif "send_message" in available and not replied:
            response = self._reply(event, system, exchange, step, available, asked, told)
        else:
            # Nothing left to do. No text: the loop would deliver text to the customer as a second reply.
            response = LLMResponse(content=None, tool_calls=[])
        response.prompt_tokens = sum(count_message_tokens(m) for m in messages)
        response.completion_tokens = count_tokens(response.content or "") + sum(
            count_tokens(c.arguments) for c in response.tool_calls
        )
        return response

    def summarize(self, *, instruction: str, text: str, max_tokens: int, fallback: str) -> str:
        return fallback

    def _first_step(
        self,
        event: str,
        system: str,
        available: set[str],
        asked: str,
        told: list[Fact] = [],  # noqa: B006
    ) -> LLMResponse:
        body, match = _body(event)
        questions = [s for s in sentences(body) if is_question(s)]
        query = " or ".join(keywords(" ".join(questions) or body))
        calls = [
            _call(0, 0, "conversation_search", query=query),
            _call(0, 1, "archival_memory_search", query=query),
        ]
        facts = facts_in(body, asked) + told
        listed: set[str] = set()
        for kind in [f.kind for f in facts] + [k for q in questions for k in _asked_kinds(q)]:
            if kind.target == "archival" and kind.key not in listed:
                listed.add(kind.key)
                calls.append(_call(0, len(calls), "archival_memory_search", query="", tags=[kind.key]))
        for label, edits in _core_edits(facts, system).items():
            for operation, old, new in edits:
                if operation == "append":
                    calls.append(_call(0, len(calls), "core_memory_append", label=label, content=new))
                else:
                    calls.append(
                        _call(0, len(calls), "core_memory_replace", label=label, old_content=old, new_content=new)
                    )
        ticket = match.group("ticket") if match else None
        if match and ticket and not re.search(rf"#{ticket}\b", _block_text(system, "open_issues")):
            first = next((s for s in sentences(body) if not is_question(s)), body)
            line = f"#{ticket} {match.group('subject')}: {' '.join(first.split())[:120]}"
            calls.append(_call(0, len(calls), "core_memory_append", label="open_issues", content=line))
        calls = [c for c in calls if c.name in available]
        return LLMResponse(content=None, tool_calls=calls)

    def _consolidate(self, solved: re.Match[str], system: str, step: int) -> LLMResponse:
        lines = _block_text(system, "open_issues").split("\n")
        marker = f"#{solved.group('ticket')}"
        hits = [i for i, line in enumerate(lines) if re.search(rf"{marker}\b", line)]
        if not hits:
            return _stop(f"{REPLY_PREFIX} Nothing in open_issues refers to ticket {marker}.")
        index = hits[0]
        # Take the line with one neighbouring newline so no blank line is left behind.
        old = lines[index] + "\n" if index + 1 < len(lines) else ("\n" if index else "") + lines[index]
        arguments = {"label": "open_issues", "old_content": old, "new_content": ""}
        call = _call(step, 0, "core_memory_replace", request_heartbeat=False, **arguments)
        return LLMResponse(content=None, tool_calls=[call])

    def _reply(
        self,
        event: str,
        system: str,
        exchange: list[dict[str, Any]],
        step: int,
        available: set[str],
        asked: str,
        told: list[Fact] = [],  # noqa: B006
    ) -> LLMResponse:
        body, _ = _body(event)
        found = _Findings.read(exchange)
        calls: list[ToolCallRequest] = []
        noted = list(found.noted)
        for fact in facts_in(body, asked) + told:
            if fact.kind.target != "archival":
                continue
            current = found.passages_of(fact.kind.key)
            if fact.kind.key == "reference":  # a new e-ticket number does not replace the booking code
                current = [
                    p for p in current if _label_of(p["text"].removeprefix(fact.prefix)) == _label_of(fact.value)
                ]
            if any(p["text"].casefold() == fact.line.casefold() for p in current):
                continue
            replace = current[0] if current and (fact.kind.single or fact.changed) else None
            if replace is not None and "archival_memory_supersede" in available:
                calls.append(
                    _call(
                        step,
                        len(calls),
                        "archival_memory_supersede",
                        request_heartbeat=False,
                        passage_id=replace["passage_id"],
                        content=fact.line,
                        tags=[fact.kind.key],
                    )
                )
                noted.append(f"{fact.line} (replacing {replace['text'].removeprefix(fact.kind.prefix)})")
            elif "archival_memory_insert" in available:
                calls.append(
                    _call(
                        step,
                        len(calls),
                        "archival_memory_insert",
                        request_heartbeat=False,
                        content=fact.line,
                        tags=[fact.kind.key],
                    )
                )
                noted.append(fact.line)
        text = _reply_text(body, system, found, noted)
        calls.append(_call(step, len(calls), "send_message", message=text, request_heartbeat=False))
        return LLMResponse(content=None, tool_calls=calls)


def _core_edits(facts: list[Fact], system: str) -> dict[str, list[tuple[str, str, str]]]:
    """Per block: (operation, old line, new line) for the core facts that are not in memory yet."""
    edits: dict[str, list[tuple[str, str, str]]] = {}
    lines = {label: _block_lines(system, label) for label in ("customer", "preferences")}
    for fact in facts:
        if fact.kind.target == "archival":
            continue
        block = lines[fact.kind.target]
        names = [line.removeprefix("Name: ") for line in block if line.startswith("Name: ")]
        if fact.kind.key == "surname" and names:
            # "surname is Gallagher": the given names on file with the new surname
            given = names[-1].split()[:-1] or names[-1].split()
            fact = Fact(_KIND["name"], " ".join([*given, fact.value]), True)
        if fact.kind.key == "name" and names and not fact.changed:
            # "it's Edith again" is Edith Parrish, still: a shorter form of the name on file changes nothing
            on_file = {word.casefold() for word in names[-1].split()}
            if all(word.casefold() in on_file for word in fact.value.split()):
                continue
        if any(line.casefold() == fact.line.casefold() for line in block):
            continue
        same_kind = [line for line in block if line.startswith(fact.prefix)]
        if same_kind and (fact.kind.single or fact.changed):
            old = same_kind[-1]
            edits.setdefault(fact.kind.target, []).append(("replace", old, fact.line))
            block[block.index(old)] = fact.line
        else:
            edits.setdefault(fact.kind.target, []).append(("append", "", fact.line))
            block.append(fact.line)
    return edits


# ----------------------------------------------------------------------------------------------
# Reading the tool results and answering


_ON_FILE = "what I have on file"


@dataclass
class _Evidence:
    text: str
    source: str  # "2026-03-02, ticket #12, staff" / "core memory" / "note of 2026-03-02"
    kind: str = ""  # the fact kind of a stored fact line
    staff: bool = False  # an answer from support staff, or a solved ticket's resolution
    order: int = 0  # newer evidence has a higher order
    context: str = ""  # for a ticket's resolution: the whole summary (what problem it resolved)


@dataclass
class _Findings:
    passages: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    noted: list[str]

    @classmethod
    def read(cls, exchange: list[dict[str, Any]]) -> _Findings:
        calls = {c["id"]: c["function"] for m in exchange for c in m.get("tool_calls") or []}
        found = cls([], [], [])
        for message in exchange:
            if message.get("role") != "tool":
                continue
            function = calls.get(message.get("tool_call_id", ""), {})
            result = _json(message.get("content"))
            payload = result.get("result") or {}
            name = function.get("name")
            if not result.get("ok"):
                continue
            if name == "archival_memory_search":
                found.passages += [p for p in payload.get("results", []) if p not in found.passages]
            elif name == "conversation_search":
                found.messages += [m for m in payload.get("results", []) if m not in found.messages]
            elif name in {"core_memory_append", "core_memory_replace"}:
                arguments = _json(function.get("arguments"))
                if arguments.get("label") == "open_issues":
                    continue
                content = arguments.get("content") or arguments.get("new_content") or ""
                pending = not payload.get("applied", True)
                found.noted.append(content + (" (awaiting staff review)" if pending else ""))
        return found

    def passages_of(self, key: str) -> list[dict[str, Any]]:
        """Current passages of one fact kind, newest first."""
        rows = [p for p in self.passages if key in (p.get("tags") or [])]
        return sorted(rows, key=lambda p: (p.get("stored", ""), p.get("passage_id", 0)), reverse=True)


def _evidence(system: str, found: _Findings, body: str) -> list[_Evidence]:
    items: list[_Evidence] = []
    for label in ("customer", "preferences"):
        for line in _block_lines(system, label):
            kind = next((k.key for k in KINDS if k.prefix and line.startswith(k.prefix)), "")
            items.append(_Evidence(line, _ON_FILE, kind, order=10**9))
    for passage in found.passages:
        tags = passage.get("tags") or []
        kind = next((k.key for k in KINDS if k.key in tags and passage["text"].startswith(k.prefix)), "")
        date = str(passage.get("stored", ""))[:10]
        ticket = next((t.removeprefix("ticket-") for t in tags if re.fullmatch(r"ticket-\d+", t)), None)
        source = f"{date}, summary of ticket #{ticket}" if ticket else f"{date}, my notes"
        for sentence in _passage_sentences(passage["text"]):
            staff = sentence.startswith("Resolution:")
            context = passage["text"] if staff else ""
            items.append(_Evidence(sentence, source, kind, staff, passage.get("passage_id", 0), context))
    echo = " ".join(body.split())
    for row in found.messages:
        role = row.get("from")
        # Never the agent's own replies (they are not evidence), nor the message being answered.
        if role not in ("customer", "staff") or " ".join(str(row["text"]).split()) == echo:
            continue
        date = str(row.get("when", ""))[:10]
        where = f", ticket #{row['ticket']}" if row.get("ticket") else ""
        source = f"{date}{where}, {'support team' if role == 'staff' else 'you wrote'}"
        for sentence in sentences(str(row["text"])):
            if role == "customer" and is_question(sentence):
                continue
            items.append(_Evidence(sentence, source, staff=role == "staff", order=row.get("message_id", 0)))
    return items


def _passage_sentences(text: str) -> list[str]:
    """A passage's sentences; a ticket summary's "Resolution: ..." stays one piece, since it is the answer."""
    head, _, resolution = text.partition(" Resolution: ")
    parts = sentences(head)
    if resolution:
        parts.append(f"Resolution: {resolution.strip()}")
    return parts


# The words a question asks for a kind with, and words that ask without saying which one ("how many", "number").
_ASKING_WORDS = frozenset(
    _stem(word)
    for word in {w for kind in KINDS for w in kind.asked_by}
    | _wordset("number no id code many much often long kind type sort exactly usual way details detail file record")
)
_REFERENCE_LABELS = frozenset(_stem(w) for w in _KIND["reference"].asked_by) - {"reference", "code"}


def _score(question: str, item: _Evidence, asked: list[Kind], elsewhere: frozenset[str] = frozenset()) -> float:
    wanted = _terms(question)
    fix_asked = bool(wanted & _RESOLUTION_WORDS) or bool(re.search(r"\bwhy\b", question, re.IGNORECASE))
    # Asked what fixed something, a resolution counts the words of the problem it resolved too.
    have = _terms(item.text) | (_terms(item.context) if fix_asked else set())
    score = float(sum(1 for term in wanted if term in have or _shares_stem(term, have)))
    if item.kind and any(kind.key == item.kind for kind in asked):
        # A stored fact of the kind asked about ranks first, unless the question says which one it means, this is
        # not it and other evidence is: "the replacement order number" is not the order on file, "which card did
        # you block?" not the new card, "my claim number" not the policy reference. A kind asked by the question's
        # form ("Where do invoices get sent?") is not narrowed by its nouns.
        specific = {t for t in wanted - _ASKING_WORDS if not (t in have or _shares_stem(t, have)) and t in elsewhere}
        labels = wanted & _REFERENCE_LABELS
        narrowed = specific or (item.kind == "reference" and labels and not labels & have)
        by_form = any(kind.key == item.kind for kind in _form_kinds(question))
        score += 0.5 if narrowed and not by_form else 3
    if fix_asked and item.staff:
        score += 1.5
    return score


def _answer(question: str, items: list[_Evidence], used: set[str]) -> list[_Evidence]:
    """The one to three pieces of evidence that best answer a question, best first; none when nothing fits."""
    asked = _asked_kinds(question)
    wanted = _terms(question)
    # One shared word is enough for a short question ("Which error did I get?"), two for a longer one; a stored
    # fact of the kind asked about ranks first.
    need = 1.0 if len(wanted) <= 2 else 2.0
    # Words of the question that a staff message or another stored fact holds: "the replacement order is A-99907",
    # "Dog: Bolt". (Not the customer's own older words: "We pay for 25 licenses" is what the stored "Seats: 35
    # licenses" replaced.)
    current = [item for item in items if item.staff or item.kind or item.source == _ON_FILE]
    elsewhere = frozenset(t for item in current for t in _terms(item.text) & wanted)
    scored = [(_score(question, item, asked, elsewhere), item.order, item) for item in items if item.text not in used]
    enough = [row for row in scored if row[0] >= need]
    if not enough and need > 1:
        # Nothing shares two words ("What's the size limit for uploads?" / "the limit is 10 MB per file"): the
        # newest staff answer that shares one, alone.
        staff = sorted((row for row in scored if row[0] >= 1 and row[2].staff), key=lambda row: row[1], reverse=True)
        return [staff[0][2]] if staff else []
    scored = sorted(enough, key=lambda row: (row[0], row[1]), reverse=True)
    if not scored:
        return []
    best = scored[0][0]
    picked: list[_Evidence] = []
    for score, _, item in scored:
        if score < best * 0.75 or len(picked) == 3:
            break
        if item.text not in [p.text for p in picked]:
            picked.append(item)
    return picked


def _reply_text(body: str, system: str, found: _Findings, noted: list[str]) -> str:
    questions = [s for s in sentences(body) if is_question(s)]
    items = _evidence(system, found, body)
    parts: list[str] = []
    used: set[str] = set()
    for question in questions[:3]:
        picked = _answer(question, items, used)
        quoted = question if len(question) <= 90 else question[:87] + "..."
        if not picked:
            parts.append(f"You asked: \u201c{quoted}\u201d I found nothing about that in your history.")
            continue
        used.update(item.text for item in picked)
        lines = "\n".join(f"- {item.text} ({item.source})" for item in picked)
        parts.append(f"You asked: \u201c{quoted}\u201d Here is what I found:\n{lines}")
    if noted:
        parts.append("I noted: " + "; ".join(noted) + ".")
    if not questions:
        statement = " ".join(s for s in sentences(body) if not is_question(s))
        related = _answer(statement, [i for i in items if i.staff], used) if statement else []
        if related:
            parts.append("This may help, from earlier:\n" + "\n".join(f"- {i.text} ({i.source})" for i in related))
        if not noted and not related:
            parts.append("I found nothing related in your history; a teammate will follow up.")
    return f"{REPLY_PREFIX} " + "\n\n".join(parts)


def _json(text: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(str(text))
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _stop(text: str) -> LLMResponse:
    return LLMResponse(content=text, tool_calls=[])
