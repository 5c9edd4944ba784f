"""The offline model: a deterministic, extractive stand-in for an LLM, used when no OPENAI_API_KEY/OPENAI_BASE_URL
is set.

It speaks the same tool protocol as a real model (tool calls with request_heartbeat, results read back on the
next step), so the whole pipeline runs on a machine with no network. It never invents anything: what it stores
is a phrase the customer stated, what it answers is a sentence it found. Step by step:

Customer message (the new event is "New message from the customer ... :\\n<body>")
  Step 1. The body is split into sentences; a sentence that asks something ("Can you remind me what my order
     number is?") is a question and is never a source of facts. Each statement is matched against a few fact
     patterns (name, employer, product, plan, seats, email, phone, city, address, order and account numbers,
     preferences); a fact's value ends at its clause boundary (punctuation, "and", "but", "now"...).
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

import json
import re
from dataclasses import dataclass
from typing import Any

from memory.services import DEFAULT_CUSTOMER_BLOCKS
from support_agent.llm import LLMResponse, ToolCallRequest
from support_agent.tokens import count_message_tokens, count_tokens


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


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
_CHANGE_REQUEST = re.compile(r"\b(?:update|change|set|correct)\s+my\b[^?]*?\bto\b", re.IGNORECASE)
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
    mostly mainly usually always often sometimes currently whenever every
    """
)
# A product ends sooner: "the Verifone P400 card reader at our cafe" is the Verifone P400 card reader.
_PRODUCT_BOUNDARY = _BOUNDARY_WORDS | _wordset("at in for to with after before until")
# What someone runs ends before the machine it runs on: "running windows 11 on a thinkpad".
_SYSTEM_BOUNDARY = _PRODUCT_BOUNDARY | _wordset("on")
_NAME_STOP = _BOUNDARY_WORDS | _wordset("the a an at in on to of by")
_NAME_PARTICLES = _wordset("de da do dos das del della di du la le van von der den ter ten al el bin ibn ni nic")
# Capitalised words that open a sentence or follow "I'm" without being a name ("I'm Sorry", "Thank You.").
_NOT_NAMES = _wordset(
    """
    nobody everyone everybody someone somebody me us again anyone all
    sorry not back fine good here done okay ok unable still using on in at the a an also just so very really happy
    glad afraid sure writing trying having getting looking calling contacting reaching following reporting from
    with now new ready confused stuck locked frustrated annoyed thanks thank you hello hi hey dear urgent order
    invoice help update quick question re fwd ticket morning afternoon evening regards best cheers team support
    please pls yes no hope sent following attached monday tuesday wednesday thursday friday saturday sunday
    """
)
# Roles that say where someone works: "I'm the office manager at Blue Fern Dental", "IT lead at Fjordline AS".
_ROLES = (
    r"(?:manager|owner|co-owner|lead|head|director|admin|administrator|engineer|developer|accountant|founder|"
    r"co-founder|ceo|cto|cfo|coo|coordinator|assistant|officer|analyst|consultant|designer|technician|"
    r"receptionist|buyer|partner|secretary|bookkeeper|supervisor|president|chef|teacher|nurse|doctor|editor)"
)
_SIGN_OFF = re.compile(
    r"(?:^|\n|[.!?]\s+)\s*(?:thanks|thank you|many thanks|cheers|best|best wishes|regards|best regards|kind regards|"
    r"warm regards|sincerely|all the best)[,!.]?\s*\n+\s*(?:[-\u2013\u2014]+\s*)?"
    r"(?P<name>(?-i:[A-Z][\w'\u2019-]+(?: [A-Z][\w'\u2019-]+){0,2}))\.?\s*$",
    re.IGNORECASE,
)
_BARE_NAME = re.compile(
    r"^(?:(?:hi|hello|hey)(?: there| all| team)?[,!]?\s+)?"
    r"(?P<name>(?-i:[A-Z][\w'\u2019-]+(?: [A-Z][\w'\u2019-]+){1,2}))[.,!]?$",
    re.IGNORECASE,
)
# After a name: "from Northwind Logistics", "here, IT lead at Fjordline AS", ", owner of Blue Fern".
_NAME_THEN_EMPLOYER = re.compile(
    rf"^(?:\s+here)?\s*,?\s*(?:(?:the |an? )?(?:[\w-]+ ){{0,2}}{_ROLES}\s+)?(?:from|at|of|with)\s+(?=(?-i:[A-Z]))",
    re.IGNORECASE,
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


KINDS: tuple[Kind, ...] = (
    Kind(
        "name",
        "Name: ",
        "customer",
        True,
        "name",
        (
            r"\bmy (?:full |real )?name(?: is|'s| has changed to| changed to)",
            r"(?:^|[,!.]\s*)(?:(?:so|and|now|yes|ok|okay)[,]?\s+)?(?:this is|it's|it is)(?=\s+(?-i:[A-Z]))",
            # "Sven Lindqvist here." / "Hello, Raj Patel from Patel Logistics.": a signature at the start.
            r"^(?:(?:hi|hello|hey|good \w+)(?: there| all| team| folks)?[,!]?\s+)?"
            r"(?=(?-i:[A-Z][\w'-]+(?: [A-Z][\w'-]+){1,3} (?:here\b|from [A-Z])))",
            # "Hi, I'm Kwame Osei." / "I am Inès Duarte, ...": capitalised words that end the clause.
            r"\b(?:I'?m|I am)(?=\s+(?-i:[A-Z])[\w'\u2019-]+(?:\s+(?-i:[A-Z])[\w'\u2019-]+){0,2}"
            r"\s*(?:[,.!;]|$|and\b|from\b|here\b|at\b|with\b))",
            # "hi its marco." at the start of a chat, in lower case.
            r"^(?:hi|hey|hello)(?: there)?[,!]?\s+(?:it's|its|this is)(?=\s+[^\W\d_]+(?:\s+[^\W\d_]+)?\s*(?:[,.!]|$))",
            r"\b(?:me llamo|mi chiamo|je m'appelle|mein name ist)(?=\s+(?-i:[A-Z]))",
            # "yuki here." opening a chat in lower case: the whole sentence
            r"^(?:(?:hi|hey|hello)[,!]?\s+)?(?=[^\W\d_]{2,}\s+here[.!,]?$)",
            r"(?:^|[,!.]\s*)soy(?=\s+(?-i:[A-Z]))",
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
            r"\b(?:my|our) (?:company|employer|business|organi[sz]ation) is(?: called)?",
            rf"\bI'?m (?:the |an? )?(?:[\w-]+ ){{0,2}}{_ROLES} (?:at|for|of)(?= (?-i:[A-Z]))",
        ),
        ("work", "company", "employer", "job"),
    ),
    Kind(
        "plan",
        "Plan: ",
        "customer",
        True,
        "plan",
        (
            r"\b(?:I'?m|im|I am|we'?re|we are)(?: now| currently)? on(?= (?:the |a |our )?[\w -]{2,30}? "
            r"(?:plan|tier|subscription|package|edition)\b)",
            r"\b(?:upgraded|downgraded|switched|moved) to(?= (?:the |a )?[\w -]{2,30}? "
            r"(?:plan|tier|subscription|package|edition)\b)",
            r"\b(?:my|our) (?:plan|tier|subscription)(?: is| is now| changed to|:)",
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
            r"bought|added|now have|paying for|pay for)(?= \d[\d,]* (?:seats|licen[cs]es|user licen[cs]es|agents)\b)",
        ),
        ("seats", "seat", "licenses", "licences", "license", "licence"),
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
        ),
        ("phone", "mobile", "call"),
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
            r"\bI(?: have| just)? moved to(?! the\b)",
            r"\bwe'?re (?:now )?based in",
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
            # "I have a Fritzbox 7590 router": a named or numbered thing the customer has
            Trigger(
                r"\b(?:I|we) (?:have|own|bought|got)(?: an?| the| two| a new)?"
                r"(?= (?-i:[A-Z])[\w-]*| [^\W\d_][\w-]* ?\d)",
                "device",
            ),
            # "crashes on my Pixel 8": a named or numbered device of the customer's
            Trigger(r"\bon (?:my|our)(?= (?-i:[A-Z])[\w-]*| [^\W\d_][\w-]* ?\d)", "device"),
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
        ),
    ),
    Kind(
        "preference",
        "Prefers ",
        "preferences",
        False,
        "phrase",
        (
            r"\bI(?:'d| would)? prefer",
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
                r"(?:^|\b(?:please|pls|plz|kindly|also|just|only|rather)\s+)"
                r"(?=(?:text|sms|call|phone|ring|e-?mail|whatsapp|message)\s+(?:me|us)\b)",
                "channel",
                "contact by {}",
            ),
            # "I have a nut allergy", "I'm allergic to penicillin"
            Trigger(r"\bI have an?(?= [\w-]+(?: [\w-]+)? allerg)", "phrase", "{}"),
            Trigger(r"\bI(?:'m| am) allergic to", "phrase", "allergic to {}"),
            # "please never send nut-based snacks", "don't ship on Fridays"
            Trigger(
                r"\b(?:please )?(?:never|don't|do not)(?= (?:send|ship|deliver|include|put|add|leave|use)\b)",
                "phrase",
                "never {}",
            ),
            # "Email is best.", "a text works better"
            Trigger(
                r"^(?:(?:but|so|also|and)\s+)?(?:an? )?(?=(?:e-?mail|text|sms|phone|call|whatsapp)s?\s+"
                r"(?:is|are|works?)\s+(?:best|better|easiest|preferred|fine|great)\b)",
                "channel",
                "contact by {}",
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
            "when",
            "time",
            "reach",
            "allergic",
            "allergy",
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
            r"\b(?:my|our|the new)(?: new)? (?:shipping |billing |delivery |postal |home |office |mailing )?address"
            r"(?: is| changed to| is now|:)",
            r"\bmy (?:shipping |delivery )?address to",
        ),
        ("address", "ship", "shipped", "send", "parcels", "deliver", "delivered", "live"),
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
            r"\border(?: number| no\.?| id)?"
            r"(?=\s+(?=[A-Za-z0-9-]*\d)(?=[A-Za-z0-9-]*[A-Za-z-]|\d{4})[A-Za-z0-9-]{3,}\b)",
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
            r"\b(?:my|our|the)(?: new)? (?:account|customer|client|member(?:ship)?) (?:number|id|no\.?)"
            r"(?: is| changed to| is now|:)?",
            r"\baccount (?:number |id |no\.? )?#",
            r"^(?:(?:new|our|my)\s+)?account(?: number| no\.?| id)?:?"
            r"(?=\s+(?=[A-Za-z0-9-]*\d)(?=[A-Za-z0-9-]*[A-Za-z-]|\d{4})[A-Za-z0-9-]{3,}\b)",
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
            r"\b(?:booking|reservation|confirmation|reference|ref|case|tracking|serial|licen[cs]e|contract|"
            r"policy|claim|membership)(?: number| no\.?| code| reference| ref| id| key)?(?: is| was| is now)?:?"
            r"(?=\s+#?(?=[A-Za-z0-9-]*\d)(?=[A-Za-z0-9-]*[A-Za-z-]|\d{4})[A-Za-z0-9-]{4,}\b)",
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
        ),
    ),
)
_KIND = {kind.key: kind for kind in KINDS}
_RESOLUTION_WORDS = _wordset(
    "fix fixed fixes solution solved solve resolve resolved resolution workaround worked work did do change changed "
    "refund refunded"
)


@dataclass(frozen=True)
class Fact:
    kind: Kind
    value: str
    changed: bool  # the sentence says the value changed

    @property
    def line(self) -> str:
        return f"{self.kind.prefix}{self.value}"


# ----------------------------------------------------------------------------------------------
# Reading the customer's text


def sentences(text: str) -> list[str]:
    """The text's sentences, keeping their end mark; abbreviations like "St." do not end a sentence."""
    protected = _ABBREVIATIONS.sub(lambda m: m.group(0)[:-1] + "\u2024", text)
    parts = re.split(r"(?<=[.!?])\s+|\n+", protected)
    return [part.replace("\u2024", ".").strip() for part in parts if part.strip()]


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


_CHANNELS = {"text": "text", "sms": "text", "message": "text", "call": "phone", "phone": "phone", "ring": "phone"}


_DEVICE_NOUNS = _wordset(
    "mesh router modem phone laptop printer tablet app reader scanner camera watch tv console speaker terminal "
    "headset monitor server"
)


def _read_device(text: str) -> str:
    """A named or numbered thing: "Pixel 8", "Fritzbox 7590 router", "Eero 6 mesh" (then the verb is not read)."""
    raw = [w.strip("\"'()") for w in text.split()[:6]]
    words: list[str] = []
    for index, word in enumerate(raw):
        bare = word.rstrip(",;:!?.")
        following = raw[index + 1] if index + 1 < len(raw) else ""
        named = bool(bare) and (bare[0].isupper() or any(c.isdigit() for c in bare) or bare[1:2].isupper())
        if named or (not words and any(c.isdigit() for c in following)):
            words.append(bare)
        elif words and bare.casefold() in _DEVICE_NOUNS:
            words.append(bare)
            break
        else:
            break
        if bare != word:  # punctuation ends it
            break
    return " ".join(words)


def _read_value(reader: str, text: str) -> str:
    text = text.lstrip(" :#")
    if reader == "seats":
        found = re.match(r"(\d[\d,]*) (seats|licen[cs]es|user licen[cs]es|agents)\b", text, re.IGNORECASE)
        return f"{found.group(1)} {found.group(2)}" if found else ""
    if reader == "word":
        found = re.match(r"[^\W\d_]+", text)
        return found.group(0) if found else ""
    if reader == "channel":
        found = re.match(r"(text|sms|call|phone|ring|e-?mail|whatsapp|message)\b", text, re.IGNORECASE)
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
        found = re.match(r"#?([A-Za-z0-9][A-Za-z0-9/-]{2,40})", text)
        code = found.group(1).rstrip("-/") if found else ""
        return code if re.search(r"\d", code) else ""
    if reader == "plan":
        found = re.match(
            r"(?:(?:the|a|our)\s+)?([\w -]{2,30}?) (plan|tier|subscription|package|edition)\b", text, re.IGNORECASE
        )
        if found:
            return f"{found.group(1).strip()} {found.group(2).casefold()}"
        return " ".join(_words_until_boundary(text, max_words=4))
    if reader == "address":
        # An address holds commas: it runs to the end of the sentence or to a new clause.
        found = re.match(r"(.+?)(?=\s+(?:and|but|so|please|from now on|now|instead)\b|[.!?;](?:\s|$)|$)", text)
        return found.group(1).strip(" ,") if found else ""
    if reader == "product":
        return " ".join(_words_until_boundary(text, max_words=8, boundary=_PRODUCT_BOUNDARY))
    if reader == "device":
        return _read_device(text)
    if reader == "system":
        return " ".join(_words_until_boundary(text, max_words=8, boundary=_SYSTEM_BOUNDARY))
    return " ".join(_words_until_boundary(text, max_words=8))


def facts_in(body: str) -> list[Fact]:
    """The facts the customer states in a message, in order; questions are skipped."""
    facts: list[Fact] = []

    def add(kind: Kind, value: str, changed: bool) -> None:
        if value and len(value) >= 2 and not any(f.kind == kind and f.value == value for f in facts):
            facts.append(Fact(kind, value, changed))

    parts = sentences(body)
    for number, sentence in enumerate(parts):
        if is_question(sentence):
            continue
        changed = bool(_CHANGE_MARKER.search(sentence)) or bool(_CHANGE_REQUEST.search(sentence))
        bare = _BARE_NAME.match(sentence) if number in (0, len(parts) - 1) else None
        if bare and bare.group("name").split()[0].casefold() not in _NOT_NAMES:
            add(_KIND["name"], _read_name(bare.group("name")), changed)  # "Tariq Aziz. The app crashes ..."
        for kind in KINDS:
            for trigger in kind.triggers:
                pattern, reader, template = (
                    (trigger.pattern, trigger.reader, trigger.template)
                    if isinstance(trigger, Trigger)
                    else (trigger, kind.reader, "{}")
                )
                for found in re.finditer(pattern, sentence, re.IGNORECASE):
                    rest = sentence[found.end() :]
                    value = _read_value(reader, rest)
                    if kind.key == "name" and value and value.split()[0].casefold() in _NOT_NAMES:
                        continue  # "I'm Sorry", "It's Monday"
                    plan = re.match(r"(?:(?:the|a|our)\s+)?([\w-]{2,20}) plan\b", value, re.IGNORECASE)
                    if kind.key == "product" and plan:  # "I use the free plan" names a plan, not a product
                        add(_KIND["plan"], f"{plan.group(1)} plan", changed)
                        continue
                    add(kind, template.format(value) if value else "", changed)
                    if kind.key == "name" and value:  # "Priya Raman from Northwind Logistics"
                        after = rest.lstrip(" :#")[len(value) :] if rest.lstrip(" :#").startswith(value) else ""
                        employer = _NAME_THEN_EMPLOYER.match(after)
                        if employer:
                            add(_KIND["employer"], _read_value("phrase", after[employer.end() :]), changed)
    signed = _SIGN_OFF.search(body.strip())
    if signed and signed.group("name").split()[0].casefold() not in _NOT_NAMES:
        add(_KIND["name"], _read_name(signed.group("name")), False)  # "Thanks,\nTariq Aziz"
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


def _asked_kinds(question: str) -> list[Kind]:
    words = {w.casefold() for w in re.findall(r"[\w-]+", question)}
    words |= {w[:-1] for w in words if w.endswith("s") and not w.endswith("ss")}  # "devices" asks for a device
    return [kind for kind in KINDS if words & set(kind.asked_by)]


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
        if solved:
            response = self._consolidate(solved, system, step) if not exchange else _stop("Core memory is current.")
        elif not exchange:
            response = self._first_step(event, system, available)
        elif "send_message" in available and not replied:
            response = self._reply(event, system, exchange, step, available)
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

    def _first_step(self, event: str, system: str, available: set[str]) -> LLMResponse:
        body, match = _body(event)
        questions = [s for s in sentences(body) if is_question(s)]
        query = " or ".join(keywords(" ".join(questions) or body))
        calls = [
            _call(0, 0, "conversation_search", query=query),
            _call(0, 1, "archival_memory_search", query=query),
        ]
        facts = facts_in(body)
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
        self, event: str, system: str, exchange: list[dict[str, Any]], step: int, available: set[str]
    ) -> LLMResponse:
        body, _ = _body(event)
        found = _Findings.read(exchange)
        calls: list[ToolCallRequest] = []
        noted = list(found.noted)
        for fact in facts_in(body):
            if fact.kind.target != "archival":
                continue
            current = found.passages_of(fact.kind.key)
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
        if any(line.casefold() == fact.line.casefold() for line in block):
            continue
        same_kind = [line for line in block if line.startswith(fact.kind.prefix)]
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
            kind = next((k.key for k in KINDS if line.startswith(k.prefix)), "")
            items.append(_Evidence(line, "what I have on file", kind, order=10**9))
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


def _score(question: str, item: _Evidence, asked: list[Kind]) -> float:
    wanted = _terms(question)
    fix_asked = bool(wanted & _RESOLUTION_WORDS)
    # Asked what fixed something, a resolution counts the words of the problem it resolved too.
    have = _terms(item.text) | (_terms(item.context) if fix_asked else set())
    score = float(sum(1 for term in wanted if term in have or _shares_stem(term, have)))
    if item.kind and any(kind.key == item.kind for kind in asked):
        score += 3
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
    scored = [(_score(question, item, asked), item.order, item) for item in items if item.text not in used]
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
