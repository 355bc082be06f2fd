"""Bedrock's sensitive-information (PII) entity types, found with Presidio: its checksummed recognizers, spaCy
NER (en_core_web_sm) for names and places, and patterns for the types Presidio lacks.

Recall and precision per type, on labelled data the project did not write: bench/guardrail_pii.py
(bench/results/guardrail_pii.json).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from outcrop import modelpacks
from outcrop.core.guardrails.checks.base import EntitySpan, PiiCheck
from outcrop.engines.base import require
from outcrop.errors import ModelNotReady

log = logging.getLogger(__name__)

# Presidio's weak patterns (scores 0.01-0.3) count only with one of their context words nearby, which adds
# CONTEXT_BOOST; this is Presidio's own `min_score_with_context_similarity`.
THRESHOLD = 0.4
CONTEXT_BOOST = 0.35
BEFORE, AFTER = 64, 32  # characters either side of a match searched for context words
NER_SCORE = 0.7  # spaCy gives no confidence; Presidio's default is 0.85, ours sits below the keyed patterns
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")  # Presidio's PhoneRecognizer's

# Presidio entity -> Bedrock type. Our own recognizers emit Bedrock names; ADDRESS_PART (a ZIP code, "Suite 4")
# only counts when it extends an address.
TO_BEDROCK: dict[str, str] = {
    "PERSON": "NAME",
    "LOCATION": "ADDRESS",
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "IP_ADDRESS": "IP_ADDRESS",
    "URL": "URL",
    "MAC_ADDRESS": "MAC_ADDRESS",
    "CREDIT_CARD": "CREDIT_DEBIT_CARD_NUMBER",
    "IBAN_CODE": "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
    "US_SSN": "US_SOCIAL_SECURITY_NUMBER",
    "US_BANK_NUMBER": "US_BANK_ACCOUNT_NUMBER",
    "US_PASSPORT": "US_PASSPORT_NUMBER",
    "US_DRIVER_LICENSE": "DRIVER_ID",
    "US_ITIN": "US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER",
    "UK_NHS": "UK_NATIONAL_HEALTH_SERVICE_NUMBER",
    "UK_NINO": "UK_NATIONAL_INSURANCE_NUMBER",
    "CA_SIN": "CA_SOCIAL_INSURANCE_NUMBER",
    "STREET_ADDRESS": "ADDRESS",
    "ADDRESS_PART": "ADDRESS",
}
_NER_LABELS = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}
_NER_TYPES = frozenset({"NAME", "ADDRESS"})
_NAME_KEY = "recognizer_name"  # presidio_analyzer.RecognizerResult.RECOGNIZER_NAME_KEY
# en_core_web_sm's NER has its own embedding layer: the shared tok2vec, tagger, parser and lemmatizer only cost
# time (measured: ~80 ms -> ~25 ms for 200 words on 2 cores).
_UNUSED_PIPES = ["tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer"]
_ADDRESS_GAP = re.compile(r"(?:[\s,;.\-–]|\\n){0,8}")  # a literal "\n" too: JSON-escaped text reaches us


@dataclass(frozen=True)
class Rule:
    """A pattern; the `v` group, when present, is the value. `check` drops a value (False: a failed checksum) or
    gives it another score (a number)."""

    regex: str
    score: float
    check: Callable[[str], bool | float] | None = None
    flags: int = 0


def _luhn(digits: str) -> bool:
    nums = [int(c) for c in reversed(digits) if c.isdigit()]
    return sum(n if i % 2 == 0 else (n * 2 - 9 if n > 4 else n * 2) for i, n in enumerate(nums)) % 10 == 0


def _vin_ok(vin: str) -> bool:
    """ISO 3779 / 49 CFR 565 check digit (position 9), used on North American VINs."""
    letters = [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9]
    values = dict(zip("ABCDEFGHJKLMNPRSTUVWXYZ", letters, strict=True))
    weights = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]
    total = sum((int(c) if c.isdigit() else values[c]) * w for c, w in zip(vin, weights, strict=True))
    return vin[8] == ("X" if total % 11 == 10 else str(total % 11))


def _vin_shape(vin: str) -> bool:
    return any(c.isdigit() for c in vin) and any(c.isalpha() for c in vin) and not _vin_ok(vin)


def _aba_ok(number: str) -> bool:
    d = [int(c) for c in number if c.isdigit()]
    return len(d) == 9 and (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0


@functools.cache
def _public_suffixes() -> Any:
    """tldextract over its bundled public-suffix list: its default fetches the list from the internet on first use."""
    return require("tldextract", "guardrails").TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


def _domain_ok(url: str) -> bool:
    host = re.sub(r"(?i)^[a-z]+://", "", url).split("/")[0].split(":")[0].rstrip(".,;:!?)")
    parts = _public_suffixes()(host)
    return bool(parts.domain and parts.suffix)


def _bare_domain_ok(url: str) -> bool:
    # Without a scheme the suffix must be written in lower case: "Co.Ltd" and "ETF-BL.BAR" are not domains.
    host = url.split("/")[0].rstrip(".,;:!?)")
    return host.rsplit(".", 1)[-1].islower() and _domain_ok(host)


def _address_like(value: str) -> bool:
    return any(c.isdigit() for c in value) and not re.match(r"[^\W\d]+\d", value)


@functools.cache
def _countries() -> frozenset[str]:
    """ISO 3166 alpha-2 codes (phonenumbers, a Presidio dependency, lists them)."""
    return frozenset(require("phonenumbers", "guardrails").SUPPORTED_REGIONS)


def _card_ok(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    return 12 <= len(digits) <= 19 and (digits[0] in "23456" or digits.startswith(("1800", "0604"))) and _luhn(digits)


# Dates, ZIP+4, dotted quads and SSN-shaped numbers are someone else's; "1 000 000" could be either.
_NOT_PHONE = re.compile(r"\d{4}-\d\d-\d\d|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{5}-\d{4}|\d{1,3}(?:\.\d{1,3}){3}|\d{3}-\d\d-\d{4}")
_THOUSANDS = re.compile(r"\d{1,3}(?:[ .,]\d{3})+")


def _phone_score(value: str) -> bool | float:
    """Any country's phone number, by shape: a +country code or (area code) alone is enough, and three groups of
    digits or a number valid in one of Presidio's phone regions nearly so; other shapes need a context word ("call",
    "mobile"). Presidio's PhoneRecognizer runs phonenumbers' matcher over the whole text once per region: 20 ms of
    the 30 ms budget for 200 words; validating only our candidates costs well under 1 ms."""
    digits = sum(c.isdigit() for c in value)
    if not 6 <= digits <= 15 or _NOT_PHONE.fullmatch(value):
        return False
    if value.startswith("+"):
        return 0.6 if digits >= 8 else False
    if "(" in value:
        return 0.5 if digits >= 7 else 0.25
    groups = len(re.findall(r"\d+", value))
    if groups >= 3 and digits >= 7 and not _THOUSANDS.fullmatch(value):
        return 0.4
    # an unbroken run of digits (an account, a routing number) passes as a phone number only in the North American plan
    regions = PHONE_REGIONS if groups > 1 else ("US",)
    return 0.4 if digits >= 7 and _valid_somewhere(value, regions) else 0.25 if groups > 1 else 0.1


def _valid_somewhere(value: str, regions: Iterable[str]) -> bool:
    phonenumbers = require("phonenumbers", "guardrails")
    for region in regions:
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(value, region)):
                return True
        except phonenumbers.NumberParseException:
            continue
    return False


_KEY = r"\s*(?:number|no\.?|num|#|id)?\s*(?:is|was|[:=#-])?\s*[\"'`]?"  # between a keyword and its value
_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Square|Sq|Terrace|Ter|"
    r"Way|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Trail|Trl|Alley|Row|Crescent|Close|Plaza|Pike|Loop|Path|Walk|"
    r"Crossing|Expressway|Freeway|Turnpike|Route|Rte|Heights|Park|Gardens?|Grove|Glen|Hills?|Ridge|Point|View|"
    r"Vista|Mews|Commons?|Cove|Creek|Crest|Estates?|Falls|Ferry|Fields?|Harbou?r|Haven|Hollow|Island|Junction|"
    r"Knolls?|Lakes?|Landing|Meadows?|Mills?|Mount|Mountain|Orchard|Oval|Pass|Pines?|Plains?|Port|Prairie|"
    r"Ranch|Rapids|River|Shores?|Springs?|Station|Summit|Trace|Track|Valley|Via|Village|Ville|Wharf|Quay|Gate|"
    r"Green|Center|Centre|Bridge|Brooks?|Canyon|Cape|Cliffs?|Corners?|Course|Curve|Dale|Flats?|Ford|Forest|"
    r"Forges?|Forks?|Fort|Gateway|Inlet|Isle|Keys?|Lodge|Manor|Motorway|Run|Skyway|Spur|Stravenue|Union|Ways?|Wells?)"
)
_UNIT = r"(?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|Rm|Room|Bldg|Building|Flat)\.?\s*#?\s*[A-Za-z]?\d{1,5}[A-Za-z]?"
_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|"
    "OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR"
)
# Patterns use the `regex` module (a Presidio dependency) for \p{Lu}: street names in any script.
_CAP = r"\p{Lu}[\p{L}\p{M}\d'’.-]*"
_WORD = rf"(?:{_CAP}|de|da|do|dos|das|del|della|di|la|le|les|des|du|van|von|der|den|nad|pod|y|e|el|al|am|an|im|sur)"
_NUM = r"\d{1,6}[A-Za-z]?(?:[-/]\d{1,5}[A-Za-z]?)?"
_NAME = (  # up to four capitalized words or initials, not a pronoun, stopping at an address or company word
    rf"(?!(?:The|A|An|This|That|It|He|She|They|We|I|You|His|Her|My|Our|Their|Yes|No|Mr|Mrs|Ms|Dr)\b){_CAP}"
    rf"(?:[ \t]+(?!(?:Apt|Suite|Unit|Inc|Ltd|Corp|LLC|Street|St|Road|Ave)\b)(?:{_CAP}|van|von|de|der|den|da|di|le|la|"
    rf"del|du)){{0,3}}"
)
_STREET_BEFORE = (
    r"via|viale|piazza|piazzale|corso|largo|vicolo|rua|rúa|avenida|av\.|calle|carrer|paseo|plaza|rue|avenue|boulevard|"
    r"bd|chemin|impasse|allée|place|quai|praça|travessa|estrada|ulica|ul\.|aleja|al\.|strada|calea|bulevardul"
)
_STREET_AFTER = (
    r"strasse|straße|str\.|weg|gasse|allee|platz|ring|damm|ufer|utca|út|tér|körút|ulica|tee|tänav|iela|gatvė|vej|gade|"
    r"gata|gatan|vägen|veien|vei|katu|tie|straat|laan|steeg|plein|kade|gracht|stræde|street|road"
)

# Bedrock type (or Presidio entity) -> context words and rules, for what Presidio has no recognizer for.
RULES: dict[str, tuple[tuple[str, ...], tuple[Rule, ...]]] = {
    "STREET_ADDRESS": ((), (
        Rule(rf"\b{_NUM}\s+(?:(?:[NSEW]|N[EW]|S[EW]|North|South|East|West)\.?\s+)?(?:(?:{_CAP}|\d{{1,3}}(?:st|nd|rd|th))"
             rf"\s+){{1,4}}(?i:{_SUFFIX})\b\.?(?:\s+(?:[NSEW]|N[EW]|S[EW])\b\.?)?(?:,?\s*{_UNIT})?", 0.9),
        # continental formats: a street type before or after the name, the house number last
        Rule(rf"\b(?i:{_STREET_BEFORE})\s+(?:{_WORD}\s+){{0,5}}?{_CAP},?\s+{_NUM}\b", 0.8),
        Rule(rf"\b(?:{_CAP}[ \t]+){{0,2}}(?:\p{{Lu}}[\p{{L}}-]*(?i:{_STREET_AFTER})|{_CAP}[ \t]+(?i:{_STREET_AFTER}))"
             rf",?[ \t]+{_NUM}\b", 0.8),
        Rule(r"\b(?:P\.?\s?O\.?\s?Box|Post\s?box|Postfach|Apartado|Caixa\s+Postal|Boîte\s+Postale)\s+\d{1,6}\b", 0.8,
             flags=re.IGNORECASE),
        # US military mail (USPS Publication 28)
        Rule(r"\b(?:PSC|CMR|Unit)\s+\d{1,5},?\s+Box\s+\d{1,5}\b|\b(?:APO|FPO|DPO)\s+(?:AA|AE|AP)\s+\d{5}\b", 0.8),
        Rule(rf"\b(?:USNS|USNV|USS|USCGC)\s+{_CAP}", 0.6),
        Rule(rf"\b(?:{_STATES})\s+\d{{5}}(?:-\d{{4}})?\b", 0.6),
        # what follows "lives at", "address:" (or "send it to" and a house number) to the end of the line, when it
        # has a number and does not start with a code ("IBAN GB82WEST...")
        Rule(rf"\b(?:(?i:address(?:\s+is)?|lives?\s+(?:at|on)|living\s+at|located\s+at|moved\s+to|corner\s+of)\s*:?\s*"
             rf"(?P<v>(?:{_NUM}|{_CAP})(?:,?[ \t]+(?:{_NUM}|{_WORD}|and)){{1,8}})|(?i:send|sent|ship|shipped|deliver|"
             rf"delivered|mail|mailed|return)\s+(?:\S+\s+){{0,3}}?(?i:to)\s*:?\s*(?P<v>{_NUM}(?:,?[ \t]+(?:{_NUM}|{_WORD}|and))"
             rf"{{1,8}}))(?!\w)", 0.75, _address_like),
        Rule(r"\b(?i:zip(?:\s*code)?|postal\s*code|post\s*code)\s*(?:is|:)?\s*(?P<v>(?=[A-Z0-9 -]*\d)[A-Z0-9][A-Z0-9 -]{2,8}"
             r"[A-Z0-9])\b", 0.7),
        # a street name then its number, ending a line that more of the address follows
        Rule(rf"(?:\b{_NUM}[ \t]+)?(?:{_CAP}[ \t]+)(?:{_WORD}[ \t]+){{0,2}}{_NUM}(?=[ \t]*(?:,|\n)[^\w\n]*(?:{_UNIT}|\d{{4,5}}"
             rf"|\p{{Lu}}))", 0.6),
        # a place after "live in", "grew up in", "I'm in", "home city", "originally from"
        Rule(rf"\b(?i:live[sd]?\s+in|living\s+in|grew\s+up\s+in|born\s+in|based\s+in|moved\s+(?:here\s+)?(?:from|to)|"
             rf"home\s+(?:city|town)|city\s+of|town\s+of|village\s+of|(?:university|college)\s+of|I'?m\s+in|I\s+am\s+in|"
             rf"originally\s+from|"
             rf"(?:travel(?:l?ing)?|trip|flight|moving|going)\s+to)\s+(?P<v>{_CAP}(?:[ \t]+(?:{_CAP}|de|del|la|le|nad|am|an|"
             rf"sur|upon|on)){{0,3}}?)(?=\s*(?:[,.;:!?)\n]|$|for|at|and|with|next|last|this|on|in)\b|\s*[,.;:!?)])", 0.75),
    )),
    "ADDRESS_PART": ((), (
        Rule(rf"\b{_UNIT}\b", 0.5), Rule(r"\b\d{4,5}(?:-\d{3,4})?\b", 0.5),
        # a line holding only a place name ("GRIMSTAD", "Las Piedras"), when it continues an address
        Rule(rf"(?m)^[^\w\n]{{0,4}}(?P<v>{_CAP}(?:[ \t]+{_WORD}){{0,3}})[ \t]*,?[ \t]*$", 0.5),
    )),
    "PHONE_NUMBER": (("phone", "tel", "mobile", "cell", "call", "fax", "contact", "reach", "text", "whatsapp", "sms",
                      "desk", "office", "landline", "ext", "dial", "ring", "message", "answering"), (
        Rule(r"(?<![\w+.:/-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,12}(?:[ .-]\(?\d{1,12}\)?){0,5}"
             r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?!\w|[.:-]\d)", 0.4, _phone_score),
    )),
    "CREDIT_CARD": (("card", "credit", "debit", "visa", "mastercard", "amex", "cc", "maestro", "jcb", "discover",
                     "diners", "unionpay", "payment", "billing", "charge"), (
        # Presidio's pattern misses 2-series Mastercard, 19-digit Visa, 12-digit Maestro and 15-digit JCB.
        Rule(r"(?<![\w-])\d(?:[ -]?\d){11,18}(?![\w-])", 0.3, _card_ok),
    )),
    "PERSON": ((), (
        Rule(rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Mme|Mlle|Herr|Frau|Sr|Sra|Srta)\.?[ \t]+(?:(?:Mr|Mrs|Ms|Dr)\.?[ \t]+)?"
             rf"(?P<v>{_NAME})", 0.8),
        Rule(rf"(?<!(?i:company|file|user|domain|host|product|brand|business|street|store|project|app|model|device|account|"
             rf"bank|place|city|town|country|pet|ship)\s+)\b(?i:my\s+name\s+is|my\s+name's|call\s+me|i\s+am\s+called|"
             rf"named|name\s*:|signed|sincerely,?|regards,?|directed\s+by:?|written\s+by|attn\.?:?|attention:|contact\s+"
             rf"person:?|patient:?|(?:last|first|full|sur)\s*name(?:\s+is|\s*:|\?)?)[ \t\n]*(?P<v>{_NAME})", 0.8),
        # who is greeted, quoted, named or related to someone
        Rule(rf"\b(?i:dear|hi|hello|hey|thanks|thank\s+you|said|asked|told|replied|shouted\s+at|spoke\s+(?:to|with)|"
             rf"talked\s+to|met\s+with|according\s+to|calls?\s+me|called|named(?:\s+(?:him|her|them))?|known\s+as|goes\s+by|"
             rf"under\s+(?:my\s+|the\s+|his\s+|her\s+)?(?:\w+'s\s+)?name|(?:my|his|her|our|their)\s+(?:son|daughter|kid|child|"
             rf"wife|husband|partner|brother|sister|mother|father|mom|dad|friend|boss|manager|colleague|uncle|aunt|cousin|"
             rf"grandfather|grandmother|nephew|niece|fianc[ée]+|girlfriend|boyfriend))[ \t]+(?P<v>{_NAME})", 0.75),
        Rule(rf"(?P<v>{_NAME})[ \t]+(?i:said|says|asked|replied|shouted|wrote|told)\b", 0.75),
    )),
    "AGE": (("age", "old", "born"), (
        Rule(r"\b(?P<v>\d{1,3}[- ]?(?:years?|yrs?|months?))[- ]old\b", 0.85, flags=re.IGNORECASE),
        Rule(r"\b(?P<v>\d{1,3}) ?(?:y/o|y\.o\.|yo)\b", 0.7, flags=re.IGNORECASE),
        Rule(r"\b(?P<v>\d{1,3}) years of age\b", 0.85, flags=re.IGNORECASE),
        Rule(r"\b(?:aged?|age of|age is)\s*:?\s*(?P<v>\d{1,3})\b(?![.,]?\d|\s*(?:%|percent))", 0.7, flags=re.IGNORECASE),
        Rule(r"\b(?:turn(?:ed|ing|s)?|(?:when|since)\s+(?:I|he|she|they)\s+(?:was|were))\s+(?P<v>\d{1,3})"
             r"(?=\s*(?:[.!?,;]|$|years|yrs|and|but|last|this|next|on|in))(?![.,]\d)", 0.6, flags=re.IGNORECASE),
        Rule(r"\b(?:I'?m|I am|he is|she is|he was|she was)\s+(?P<v>\d{1,3})(?=\s*(?:[.!?,;]|$|and|but))(?![.,]\d)", 0.3,
             flags=re.IGNORECASE),
    )),
    "USERNAME": (("user", "login", "account", "handle"), (
        Rule(r"\b(?i:user\s?name|user\s?id|login(?:\s?(?:name|id))?|screen\s?name|nick\s?name|handle)\s*(?:is|was|[:=-])"
             r"\s*[\"'`]?(?P<v>@?[A-Za-z0-9][A-Za-z0-9._-]{2,31})(?<![.-])", 0.8),
        Rule(r"(?<![\w.@-])@[A-Za-z0-9_]{3,30}(?![\w@]|[.-]\w)", 0.5),
    )),
    "PASSWORD": ((), (
        Rule(r"\b(?i:password|passwd|pwd|pass\s?phrase|passcode)\s*(?:is|was|[:=-])\s*[\"'`]?(?!(?i:incorrect|wrong|"
             r"invalid|required|expired|correct|too|not|the|a|an|my|your|strong|weak|reset|changed|set|empty|missing|"
             r"protected|case|being|still|now)\b)(?P<v>[^\s\"'`]{4,64}?)[\"'`]?(?=[\s,;)]|[.!?](?:\s|$)|$)", 0.8),
    )),
    "PIN": ((), (Rule(r"\b(?:PIN|pin|Pin)(?:\s?(?:code|number|no\.?|#))?\s*(?:is|was|[:=-])?\s*(?P<v>\d{4,8})\b", 0.8),)),
    "CREDIT_DEBIT_CARD_CVV": ((), (
        Rule(r"\b(?i:cvv2?|cvc2?|cid|csc|cvn|security\s+code|card\s+verification\s+(?:value|code|number))" + _KEY
             + r"(?P<v>\d{3,4})\b", 0.85),
    )),
    "CREDIT_DEBIT_CARD_EXPIRY": (("exp", "expiry", "expires", "expiration", "valid", "card"), (
        Rule(r"\b(?i:exp(?:iry|iration|ires|ired)?\.?(?:\s+date)?|valid\s+(?:thru|through|until|till)|good\s+thru|"
             r"expiring)\s*(?:is|on|in|[:=-])?\s*(?P<v>(?:0?[1-9]|1[0-2])\s?[/-]\s?(?:20)?\d\d|(?i:jan|feb|mar|apr|may|"
             r"jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?:20)?\d\d)\b", 0.85),
        Rule(r"(?<![\d/])(?:0[1-9]|1[0-2])/(?:20)?\d\d(?![\d/])", 0.15),
    )),
    # Presidio's URL pattern (675 TLDs, case-insensitive, four passes) cost 4 ms of the 30 ms budget; this finds
    # candidates cheaply and checks their suffix against the public-suffix list.
    "URL": (("url", "website", "link", "site"), (
        Rule(r"\b(?i:https?|ftp)://[^\s<>\"'()\[\]{}]+", 0.8, _domain_ok),
        Rule(r"\b(?i:www\d{0,3})\.[^\s<>\"'()\[\]{}]+", 0.7, _domain_ok),
        Rule(r"(?<![@\w.:/-])(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?:/[^\s<>\"'()\[\]{}]*)?(?![\w@-])", 0.5, _bare_domain_ok),
    )),
    "AWS_ACCESS_KEY": ((), (Rule(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z0-9]{16}\b", 0.95),)),
    "AWS_SECRET_KEY": (("aws", "secret", "key", "credential"), (
        Rule(r"(?i:secret_?(?:access_?)?key)(?:\s*(?:is|[:=])\s*|\W{1,5})(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])", 0.9),
        Rule(r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*\d)[A-Za-z0-9/+]{40}"
             r"(?![A-Za-z0-9/+=])", 0.3),
    )),
    "VEHICLE_IDENTIFICATION_NUMBER": (("vin", "vehicle", "chassis"), (
        Rule(r"\b[A-HJ-NPR-Z0-9]{17}\b", 0.8, _vin_ok),
        Rule(r"\b[A-HJ-NPR-Z0-9]{17}\b", 0.15, _vin_shape),
    )),
    "SWIFT_CODE": (("swift", "bic", "bank", "wire", "transfer"), (
        Rule(r"\b[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?\b", 0.15, lambda v: v[4:6] in _countries()),
    )),
    "LICENSE_PLATE": ((), (
        Rule(r"\b(?i:licen[cs]e\s+plate|number\s+plate|plate|registration|reg\.?|tag)" + _KEY
             + r"(?P<v>(?=[A-Z0-9 -]*\d)(?=[A-Z0-9 -]*[A-Z])[A-Z0-9]{1,4}[- ]?[A-Z0-9]{1,5})\b", 0.7),
    )),
    "DRIVER_ID": ((), (
        Rule(r"(?:\b(?i:driver'?s?|driving)\s+(?i:licen[cs]e|permit)|\bDL)" + _KEY
             + r"(?P<v>[A-Za-z0-9][A-Za-z0-9-]{3,18}[A-Za-z0-9])\b", 0.75,
             lambda v: sum(c.isdigit() or c.isupper() for c in v) >= 2),
    )),
    "US_PASSPORT_NUMBER": ((), (Rule(r"\b(?i:passport)" + _KEY + r"(?P<v>[A-Z]?\d{8,9})\b", 0.75),)),
    "US_BANK_ROUTING_NUMBER": (("aba", "routing", "rtn", "transit"), (Rule(r"\b\d{9}\b|\b\d{4}-\d{4}-\d\b", 0.3, _aba_ok),)),
    "CA_HEALTH_NUMBER": ((), (
        Rule(r"\b(?i:health\s+(?:card|number|insurance\s+number)|ohip|ramq|phn|carte\s+santé)" + _KEY
             + r"(?P<v>\d{4}[- ]?\d{3}[- ]?\d{3}(?:[- ]?[A-Z]{2})?|[A-Z]{4}\s?\d{4}\s?\d{4})\b", 0.75),
    )),
    "UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER": ((), (
        Rule(r"\b(?i:utr|unique\s+tax(?:payer)?\s+reference|tax\s+reference)" + _KEY + r"(?P<v>\d{5}\s?\d{5}K?)\b", 0.8),
    )),
}
for _name in RULES:
    TO_BEDROCK.setdefault(_name, _name)

# Context words for Presidio's own recognizers, where its defaults misfire: "us"/"states" for passports, substrings.
_CONTEXT_OVERRIDES = {
    "US_PASSPORT": ["passport", "travel document"],
    "US_DRIVER_LICENSE": ["driver", "license", "licence", "permit", "dl", "driving"],
    "CA_SIN": ["sin", "social insurance", "nas", "assurance sociale"],
    "UK_NHS": ["nhs", "national health service", "health service", "health authority"],
}


class PresidioPii(PiiCheck):
    """Presidio's analyzer over spaCy's small English model, answering in Bedrock's PII entity types."""

    name = "presidio"
    entities: ClassVar[frozenset[str]] = frozenset(b for b in TO_BEDROCK.values())

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, Callable[[Any], Any]] | None = None  # spaCy, the analyzer, Doc -> NlpArtifacts

    def warm(self) -> None:
        """Load spaCy, Presidio and the recognizers now rather than on the first request."""
        self._load()

    def find(self, text: str, entities: Collection[str]) -> list[EntitySpan]:
        wanted = self.entities.intersection(entities)
        if not wanted or not text.strip():
            return []
        presidio_entities = [p for p, b in TO_BEDROCK.items() if b in wanted]
        nlp, analyzer, artifacts = self._load()
        with self._lock:
            # Without names or places nothing reads tokens (context is matched on the raw text): skip spaCy.
            doc = nlp(text) if wanted & _NER_TYPES else None
            results = analyzer.analyze(text, "en", entities=presidio_entities, score_threshold=THRESHOLD,
                                       nlp_artifacts=artifacts(doc))
        found = [Finding(TO_BEDROCK[r.entity_type], *_trim(text, r), float(r.score), r.entity_type == "ADDRESS_PART",
                         (r.recognition_metadata or {}).get(_NAME_KEY) == "SpacyRecognizer") for r in results]
        return resolve(merge_addresses(found, text))

    def _load(self) -> tuple[Any, Any, Callable[[Any], Any]]:
        with self._lock:
            if self._loaded is None:
                spacy = require("spacy", "guardrails")
                path = _model_path(self.settings)
                nlp = spacy.load(path, exclude=_UNUSED_PIPES)
                self._loaded = (nlp, *_build_analyzer(nlp, str(path)))
            return self._loaded


def _model_path(settings: Any) -> Any:
    """en_core_web_md, else en_core_web_sm — said loudly, since names are then found less often."""
    try:
        return modelpacks.pack_path(modelpacks.SPACY_EN_MD, settings.model_cache)
    except ModelNotReady as exc:
        log.warning("PII check: %s; falling back to en_core_web_sm (NAME recall 0.75 instead of 0.83)", exc.message)
        return modelpacks.pack_path(modelpacks.SPACY_EN_SM, settings.model_cache)


def _trim(text: str, result: Any) -> tuple[int, int]:
    """Without surrounding white space (spaCy's entities can end in a line break), and without the sentence's
    closing period or comma that Presidio's URL pattern takes with it."""
    start, end = result.start, result.end
    while end > start + 1 and (text[end - 1].isspace() or result.entity_type == "URL" and text[end - 1] in ".,;:!?)"):
        end -= 1
    while start < end - 1 and text[start].isspace():
        start += 1
    return start, end


@dataclass(frozen=True)
class Finding:
    type: str  # Bedrock's
    start: int
    end: int
    score: float
    part: bool = False  # an ADDRESS_PART
    ner: bool = False  # from spaCy's NER rather than a pattern


def merge_addresses(found: list[Finding], text: str) -> list[Finding]:
    """Join address pieces that only punctuation or line breaks separate into one ADDRESS. An ADDRESS_PART (a ZIP
    code, "Suite 4", a line holding one place name) only extends an address that came before it."""
    merged: list[Finding] = []
    group: list[Finding] = []

    def close() -> None:
        if group:
            end = max(g.end for g in group)
            merged.append(Finding("ADDRESS", group[0].start, end, max(g.score for g in group), ner=all(g.ner for g in group)))

    for piece in sorted((f for f in found if f.type == "ADDRESS"), key=lambda f: (f.start, -f.end)):
        end = max((g.end for g in group), default=-1)
        if group and (piece.start <= end or _ADDRESS_GAP.fullmatch(text[end : piece.start])):
            group.append(piece)
            continue
        close()
        group = [] if piece.part else [piece]
    close()
    return merged + [f for f in found if f.type != "ADDRESS"]


def resolve(found: Iterable[Finding]) -> list[EntitySpan]:
    """Non-overlapping spans in text order. A pattern wins an overlap with spaCy's NER (which reads URLs and street
    names as people); otherwise the higher score wins, then the longer span."""
    kept: list[Finding] = []
    for f in sorted(found, key=lambda f: (f.ner, -f.score, f.start - f.end, f.start)):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return [EntitySpan(f.type, f.start, f.end, f.score) for f in sorted(kept, key=lambda f: f.start)]


def _build_analyzer(nlp: Any, model_path: str) -> tuple[Any, Callable[[Any], Any]]:
    """An AnalyzerEngine over our recognizers, and the function turning a spaCy Doc into its NlpArtifacts."""
    presidio = require("presidio_analyzer", "guardrails")
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine

    class Engine(SpacyNlpEngine):
        """Presidio's spaCy engine over the model we loaded; never `spacy download`s (Presidio's load() would)."""

        def load(self) -> None:
            self.nlp = cast(Any, {"en": nlp})

    engine = Engine(models=[{"lang_code": "en", "model_name": model_path}])
    engine.load()
    span_cls = require("spacy.tokens", "guardrails").Span

    def artifacts(doc: Any) -> Any:
        if doc is None:
            return NlpArtifacts(entities=[], tokens=cast(Any, []), tokens_indices=[], lemmas=[], nlp_engine=engine,
                                language="en")
        ents = [span_cls(doc, e.start, e.end, label=_NER_LABELS[e.label_]) for e in doc.ents if e.label_ in _NER_LABELS]
        # No lemmas: context is matched on the raw text around each finding (_NearbyWords).
        return NlpArtifacts(entities=ents, tokens=doc, tokens_indices=[], lemmas=[], nlp_engine=engine,
                            language="en", scores=[NER_SCORE] * len(ents))

    registry = presidio.RecognizerRegistry(recognizers=_recognizers(presidio), supported_languages=["en"])
    analyzer = presidio.AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"],
                                       context_aware_enhancer=_nearby_words(presidio))
    return analyzer, artifacts


def _recognizers(presidio: Any) -> list[Any]:
    from presidio_analyzer import predefined_recognizers as pre
    from presidio_analyzer.nlp_engine import NlpArtifacts

    regex = require("regex", "guardrails")
    offline_tld = _public_suffixes()

    class Email(pre.EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(offline_tld(pattern_text).fqdn)

    def weak(patterns: list[Any], most: float) -> list[Any]:
        return [presidio.Pattern(p.name, p.regex, min(p.score, most)) for p in patterns]

    def gate_only(cls: type[Any]) -> type[Any]:
        """A checksum that passes keeps the pattern's score (Presidio would raise it to 1.0, and one 9- or 10-digit
        number in ten passes a mod-10 or mod-11 check: phone numbers became NHS numbers)."""
        def validate_result(self: Any, text: str) -> bool | None:
            return False if cls.validate_result(self, text) is False else None

        return type(cls.__name__, (cls,), {"validate_result": validate_result})

    class Rules(presidio.LocalRecognizer):
        def __init__(self, entity: str, context: Iterable[str], rules: Iterable[Rule]) -> None:
            super().__init__(supported_entities=[entity], name=f"outcrop:{entity}", context=list(context))
            self.rules = [(regex.compile(r.regex, r.flags), r) for r in rules]

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None) -> list[Any]:
            out = []
            meta = {presidio.RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                    presidio.RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id}
            for rx, rule in self.rules:
                for m in rx.finditer(text):
                    start, end = m.span("v") if "v" in rx.groupindex else m.span()
                    verdict = True if rule.check is None or end == start else rule.check(text[start:end])
                    if end > start and verdict is not False:
                        score = rule.score if verdict is True else float(verdict)
                        out.append(presidio.RecognizerResult(self.supported_entities[0], start, end, score,
                                                             recognition_metadata=dict(meta)))
            return out

    ctx = _CONTEXT_OVERRIDES
    builtin = [
        pre.SpacyRecognizer(supported_entities=["PERSON", "LOCATION"]),
        Email(), pre.CreditCardRecognizer(), pre.IbanRecognizer(), pre.UsSsnRecognizer(),
        pre.IpRecognizer(), pre.MacAddressRecognizer(), pre.UsBankRecognizer(),
        pre.UsItinRecognizer(), pre.UkNinoRecognizer(),
        pre.UsPassportRecognizer(context=ctx["US_PASSPORT"]), pre.UsLicenseRecognizer(context=ctx["US_DRIVER_LICENSE"]),
        # Presidio scores any mod-11 10-digit number an NHS number (0.5), and any Luhn 3-3-3 number a SIN: with a
        # context word only, or one phone number in eleven becomes an NHS number.
        gate_only(pre.NhsRecognizer)(context=ctx["UK_NHS"], patterns=weak(pre.NhsRecognizer.PATTERNS, 0.1)),
        gate_only(pre.CaSinRecognizer)(context=ctx["CA_SIN"], patterns=weak(pre.CaSinRecognizer.PATTERNS, 0.3)),
    ]
    return builtin + [Rules(entity, context, rules) for entity, (context, rules) in RULES.items()]


def _nearby_words(presidio: Any) -> Any:
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer

    id_key = presidio.RecognizerResult.RECOGNIZER_IDENTIFIER_KEY
    patterns: dict[str, re.Pattern[str]] = {}

    def pattern(words: list[str]) -> re.Pattern[str]:
        # Words start at a word boundary; short ones ("ip", "dl", "sin") must also end at one.
        alts = [re.escape(w.lower()).replace(r"\ ", r"\s+") + (r"\b" if len(w) <= 3 else "") for w in words]
        return re.compile(r"(?<![a-z0-9])(?:" + "|".join(alts) + ")")

    class NearbyWords(ContextAwareEnhancer):
        """Presidio's enhancer reads lemmas within five tokens; this reads the raw text around the match instead,
        so no lemmatizer has to run, phrases ("social security") work and "us" does not match "business"."""

        def enhance_using_context(self, text: str, raw_results: list[Any], nlp_artifacts: Any, recognizers: list[Any],
                                  context: list[str] | None = None) -> list[Any]:
            by_id = {r.id: r for r in recognizers if r.context}
            lowered = text.lower()
            for result in raw_results:
                recognizer = by_id.get((result.recognition_metadata or {}).get(id_key))
                if recognizer is None or result.score >= 1.0:
                    continue
                rx = patterns.get(recognizer.id) or patterns.setdefault(recognizer.id, pattern(recognizer.context))
                if rx.search(lowered, max(0, result.start - BEFORE), result.start) or rx.search(
                    lowered, result.end, result.end + AFTER
                ):
                    result.score = min(1.0, max(result.score + CONTEXT_BOOST, THRESHOLD))
            return raw_results

    return NearbyWords(context_similarity_factor=CONTEXT_BOOST, min_score_with_context_similarity=THRESHOLD,
                       context_prefix_count=0, context_suffix_count=0)
