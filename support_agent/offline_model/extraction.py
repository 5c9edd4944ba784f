"""The offline model's reading of the customer's text: ``facts_in`` returns the facts a message states, in order, and
the facts in a reply to a staff question; ``keywords`` and the stems used to search and to match questions."""

from __future__ import annotations

import re

from support_agent.offline_model.kinds import (
    _ABBREVIATIONS,
    _ADDITION,
    _BARE_NAME,
    _BOUNDARY_WORDS,
    _CHANGE_MARKER,
    _CHANGE_REQUEST,
    _EMOJI,
    _GREETING,
    _KIND,
    _NAME_PARTICLES,
    _NAME_STOP,
    _NAME_THEN_EMPLOYER,
    _NOT_DETAIL_VALUES,
    _NOT_DETAILS,
    _NOT_NAMES,
    _PRODUCT_BOUNDARY,
    _QUESTION_PHRASE,
    _QUESTION_START,
    _ROLE_AFTER_NAME,
    _ROLES,
    _SIGN_OFF,
    _STOPWORDS,
    _SYSTEM_BOUNDARY,
    _TITLES,
    KINDS,
    Fact,
    Kind,
    Trigger,
    _compiled,
    _wordset,
)

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


# Around each trigger a fact is read from at most this much text: the words just before it (the last eight say whether
# a number is a phone; an email's sender is named right before it) and the value after it (a name, a code, an address).
# Slicing the whole sentence at every match made a long sentence of repeated triggers quadratic ("I'm " x 5,000: 3.7 s).
CONTEXT_BEFORE_CHARS = 300
VALUE_RUN_CHARS = 1000


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
        third_party: bool | None = None
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
                    before = sentence[max(0, found.start() - CONTEXT_BEFORE_CHARS) : found.start()]
                    rest = sentence[found.end() : found.end() + VALUE_RUN_CHARS]
                    if kind.key == "phone" and found.start() == found.end() and not _phone_context(before):
                        continue  # a number shaped like a phone, with nothing saying it is one
                    if kind.key == "email" and _about_someone_else(before):
                        continue
                    if kind.key in ("email", "phone"):
                        if third_party is None:  # once a sentence, not once a match
                            third_party = _third_party(sentence)
                        if third_party:
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


# A value read from a reply runs on over the pieces after it (an address) for at most this many characters: reading
# the whole rest of the reply for each piece made a long reply quadratic (3,000 short lines: 4.4 s).
REPLY_RUN_CHARS = 500


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
            rest = cleaned[starts[index] : starts[index] + REPLY_RUN_CHARS]
            value = _reply_value(kind, text, _REPLY_LEAD.sub("", rest, count=1))
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
