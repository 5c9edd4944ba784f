"""The kinds of fact the offline model reads (``KINDS``) and the phrasings that introduce them: triggers, boundaries,
the words that are never names or details."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from memory.services import DEFAULT_CUSTOMER_BLOCKS


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
# A request to change a detail states the new value even when phrased as a question. (A gap between two words of a
# pattern is at most 200 characters here and below: an unbounded lazy gap tried from every "my"/"I"/"we" made a long
# sentence of them quadratic.)
# So does a request to send something somewhere of theirs ("can you ship it to my office at Unit 4, ...?").
_CHANGE_REQUEST = re.compile(
    r"\b(?:update|change|set|correct)\s+my\b[^?]{0,200}?\bto\b|"
    r"\b(?:send|ship|deliver|post|forward|redirect)\b[^?]{0,200}?\bto (?:my|our) (?:new )?"
    r"(?:office|home|house|flat|work|apartment|place|address)\b",
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
            r"\b(?:I|we)\b[^.;]{0,200}?\bon(?= the [\w -]{2,30}? (?:plan|tier|subscription|edition)\b)",
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
            r"\b(?:I|we)\b[^.;]{0,200}?\band (?:also )?use(?: your| the| our)?(?= [\w-]+)(?! to\b)",
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
        (r"\bcard\b[^.;]{0,200}?\b(?:ends?|ending)(?: in| with)?(?= \d{4}\b)",),
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
                r"\b(?:moving|going|relocating|move|moves)(?: house| home)? from \d[^.;]{0,200}? to"
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
