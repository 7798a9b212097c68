"""Deterministic entity extraction with character offsets: `extract_entities(text, catalog)`.

Every extractor below proposes candidate spans for one entity type; `_resolve_overlaps` then keeps
a non-overlapping set (longest span first, ties broken by `TYPE_PRIORITY`, so a product beats a
category over the same words). `text[entity.start:entity.end] == entity.value` always holds.

The rules are deliberately conservative: a bare number is only a size, quantity, storage or order
id when the surrounding words say so, or when the dialogue is waiting for exactly that slot
(`awaiting_slot`, the question the bot just asked). A missed entity costs a follow-up question; a
wrong one puts a wrong value into the conversation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from elmo.brand.catalog import Catalog
from elmo.contracts.events import Entity

# When two candidates cover exactly as many characters, the higher priority wins.
TYPE_PRIORITY = {
    "product": 10, "order_id": 9, "money": 8, "date": 7, "storage": 6, "size": 5,
    "quantity": 4, "city": 3, "color": 2, "category": 1,
}  # fmt: skip

_B = r"(?<![\w])"  # start of a word
_E = r"(?![\w])"  # end of a word


def _words(alternatives: list[str] | tuple[str, ...]) -> str:
    """One alternation, longest first, so the regex engine prefers the longer surface form."""
    return "|".join(sorted(alternatives, key=len, reverse=True))


@dataclass(frozen=True, slots=True)
class _Candidate:
    type: str
    start: int
    end: int
    normalized: str | None


# --- vocabularies -----------------------------------------------------------------------------

# Synonym patterns (regex fragments) per catalog category; only categories the catalog has are used.
CATEGORY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "phones": (
        # Not the verb ("phone me") nor the line ("picked up the phone", "phone number").
        r"(?<!up the )(?<!on the )(?<!answer the )(?<!over the )(?<!by )(?<!to )(?<!\bi )(?<!ll )(?<!please )"
        r"phones?(?!\s*(?:number|call|calls|line|bill|plan|me|us|someone|him|her|them|back)\b)",
        r"smart[\s-]?phones?",
        r"mobiles?(?!\s*(?:app|apps|data|number|site|website|version|payment)\b)", r"cell[\s-]?phones?",
        r"iphones?", r"(?<!dead )(?<!stuck )pixel", r"galaxy", r"samsung", r"android phones?",
    ),
    "phone accessories": (
        r"phone accessories", r"accessor(?:y|ies)", r"(?<!in )(?<!any )(?<!that )cases?(?!\s*(?:number|id)\b)",
        r"phone covers?", r"chargers?", r"charging cables?", r"cables?", r"screen protectors?", r"power banks?",
        r"earbuds", r"headphones",
    ),
    "apparel": (
        r"apparel", r"clothes", r"clothing", r"t[\s-]?shirts?", r"tees", r"tee", r"shirts?", r"hoodies?",
        r"sweatshirts?", r"sweaters?", r"jumpers?", r"jeans", r"denim", r"pants", r"trousers", r"jackets?",
        r"coats?", r"dress(?:es)?", r"shorts",
    ),
    "shoes": (
        r"shoes?", r"sneakers?", r"trainers?", r"boots?", r"footwear", r"sandals?", r"loafers?", r"heels",
    ),
    "travel packages": (
        r"travel packages?", r"holiday packages?", r"vacation packages?", r"package holidays?",
        r"package deals?", r"travel deals?", r"trips?", r"vacations?", r"getaways?", r"city breaks?",
        r"weekend breaks?",
        # "holiday" also means a day off: not after public/bank/national/happy/the, not "holiday hours".
        r"(?<!public )(?<!bank )(?<!national )(?<!happy )(?<!the )holidays?(?!\s*(?:hours|opening|season|sale)\b)",
    ),
}

_COLOR_NAMES = (
    "black", "white", "grey", "gray", "blue", "navy", "red", "green", "pink", "violet", "purple", "brown",
    "beige", "yellow", "orange", "gold", "silver", "cream", "khaki", "olive", "teal", "burgundy", "maroon",
    "turquoise", "lilac", "lavender", "mint", "coral", "charcoal", "tan", "camel", "ivory",
    "light blue", "dark blue", "navy blue", "sky blue", "baby blue", "royal blue", "light grey", "dark grey",
    "light gray", "dark gray", "space grey", "space gray", "rose gold", "dark green", "forest green",
    "off white", "off-white", "hot pink",
)  # fmt: skip
_COLOR_NORMAL = {"gray": "grey", "navy blue": "navy", "light gray": "light grey", "dark gray": "dark grey",
                 "space gray": "space grey", "off white": "off-white"}  # fmt: skip
# Colour words that are part of something else: "black friday", "mint condition", "gold member".
_COLOR_NOT_BEFORE = r"(?!\s+(?:friday|market|list|hole|condition|member|membership|status|card|tier|level|lining)\b)"

_CITIES: dict[str, str] = {
    name.lower(): name
    for name in (
        "Paris", "London", "Berlin", "Madrid", "Barcelona", "Lisbon", "Porto", "Rome", "Milan", "Venice",
        "Naples", "Amsterdam", "Rotterdam", "Brussels", "Vienna", "Prague", "Budapest", "Warsaw", "Krakow",
        "Copenhagen", "Stockholm", "Oslo", "Helsinki", "Dublin", "Edinburgh", "Manchester", "Athens",
        "Istanbul", "Zurich", "Geneva", "Munich", "Hamburg", "Frankfurt", "Cologne", "Lyon", "Marseille",
        "Bordeaux", "Toulouse", "Seville", "Valencia", "Chamonix", "Bucharest", "Riga", "Vilnius", "Tallinn",
        "New York", "Los Angeles", "San Francisco", "Chicago", "Miami", "Toronto", "Montreal", "Mexico City",
        "Rio de Janeiro", "São Paulo", "Buenos Aires", "Tokyo", "Seoul", "Beijing", "Shanghai", "Hong Kong",
        "Singapore", "Bangkok", "Dubai", "Mumbai", "Delhi", "Sydney", "Melbourne", "Cape Town", "Cairo",
        "Marrakech", "Casablanca",
    )
} | {
    "nyc": "New York", "new york city": "New York", "lisboa": "Lisbon", "roma": "Rome", "milano": "Milan",
    "venezia": "Venice", "napoli": "Naples", "bruxelles": "Brussels", "wien": "Vienna", "praha": "Prague",
    "warszawa": "Warsaw", "kraków": "Krakow", "cracow": "Krakow", "münchen": "Munich", "muenchen": "Munich",
    "köln": "Cologne", "zürich": "Zurich", "genève": "Geneva", "geneve": "Geneva", "sevilla": "Seville",
    "marseilles": "Marseille", "sao paulo": "São Paulo", "københavn": "Copenhagen",
}  # fmt: skip

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "a couple": 2, "couple": 2, "a dozen": 12, "dozen": 12,
    "half a dozen": 6,
}  # fmt: skip
_NUMBER = r"(?:\d{1,2}|half\s+a\s+dozen|a\s+dozen|dozen|a\s+couple|couple|" + _words(
    [w for w in _NUMBER_WORDS if " " not in w and w not in ("couple", "dozen")]
) + ")"

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_ABBREVIATIONS = {"mon": 0, "tue": 1, "tues": 1, "wed": 2, "weds": 2, "thu": 3, "thur": 3, "thurs": 3,
                          "fri": 4, "sat": 5, "sun": 6}  # fmt: skip
_MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4, "may": 5,
    "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sept": 9, "sep": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip

_LETTER_SIZES = {"xxs": "XXS", "xs": "XS", "s": "S", "m": "M", "l": "L", "xl": "XL", "xxl": "XXL", "2xl": "XXL",
                 "xxxl": "XXXL", "3xl": "XXXL"}  # fmt: skip
_WORD_SIZES = {"extrasmall": "XS", "xsmall": "XS", "small": "S", "medium": "M", "large": "L",
               "extralarge": "XL", "xlarge": "XL", "xxlarge": "XXL"}  # fmt: skip
# Words a bare answer may carry around its one value: "the L pls", "42 thanks".
_FILLERS = frozenset(
    "the a an in size sz pls plz please thanks thx ty ok okay um uh uhm hmm maybe i guess think "
    "want would like take go with for me then just yes yeah yep".split()
)
_STORAGE_CAPACITIES = frozenset({16, 32, 64, 128, 256, 512, 1024})


# --- patterns that depend on the catalog (cached by catalog identity) ------------------------


@dataclass(frozen=True)
class _CatalogPatterns:
    products: tuple[tuple[re.Pattern[str], str], ...]
    categories: tuple[tuple[re.Pattern[str], str], ...]
    quantity: re.Pattern[str]
    numerically_sized: re.Pattern[str]


def _surface_pattern(surface: str, *, singular: bool = True, plural: bool = True) -> str:
    """'Pixel 9' also matches 'pixel9', 'PIXEL-9'; 'T-Shirt' matches 'tshirt', 't shirt', 't-shirts'."""
    tokens = [re.escape(t) for t in re.findall(r"[^\W\d_]+|\d+", surface.lower())]
    last = tokens[-1]
    if last.isalpha():
        if last.endswith("s"):
            tokens[-1] = last[:-1] + "s?" if singular else last
        elif plural:
            tokens[-1] = last + "(?:e?s)?"
    return r"[\s\-_]*".join(tokens)


def _product_patterns(catalog: Catalog) -> tuple[tuple[re.Pattern[str], str], ...]:
    patterns = []
    for item in catalog.items:
        name_tokens = item.name.lower().split()
        patterns.append((re.compile(_B + "(?:" + _surface_pattern(item.name) + ")" + _E, re.IGNORECASE), item.id))
        for alias in item.aliases:
            # A family alias ("iphone" for "iPhone 16") followed by another model number names a
            # model we do not sell ("iphone 15"): not this product (it still reads as a category).
            # Its plural ("dead pixels") is no product either.
            family = alias.lower().split() == name_tokens[: len(alias.split())]
            # An alias's singular is too often a plain word ("runners" -> "a runner").
            pattern = _B + "(?:" + _surface_pattern(alias, singular=False, plural=not family) + ")" + _E
            if family:
                pattern += r"(?![\s\-]*s?\d{1,2}(?!\d|\s*(?:gb|tb|g)\b))"
            patterns.append((re.compile(pattern, re.IGNORECASE), item.id))
    return tuple(patterns)


def _category_patterns(catalog: Catalog) -> tuple[tuple[re.Pattern[str], str], ...]:
    patterns = []
    for category in catalog.categories:
        synonyms = [re.escape(category), *CATEGORY_SYNONYMS.get(category, ())]
        patterns.append((re.compile(_B + "(?:" + _words(synonyms) + ")" + _E, re.IGNORECASE), category))
    return tuple(patterns)


def _quantity_pattern(catalog: Catalog) -> re.Pattern[str]:
    """A number only counts as a quantity when an item noun follows ("2 black hoodies", "two of them")."""
    nouns = [_surface_pattern(s) for item in catalog.items for s in (item.name, *item.aliases)]
    nouns += [s for c in catalog.categories for s in CATEGORY_SYNONYMS.get(c, ())]
    nouns += [r"pieces?", r"pcs", r"items?", r"units?", r"pairs?", r"of\s+(?:them|these|those|the|each)"]
    modifiers = _words([
        *_COLOR_NAMES, "extra large", "large", "medium", "small", "xs", "xl", "xxl", "new", "more", "extra",
        "other", "different", "matching", "same", "classic", "slim", "zip", "cheap", "cheaper", "pairs?", "of",
        "the", "these", "those", "x",
    ])  # fmt: skip
    return re.compile(
        rf"(?<![\w#.,/€$£\-])(?P<n>{_NUMBER}){_E}"
        rf"(?=(?:\s+of)?(?:\s+(?:{modifiers}){_E}){{0,2}}\s+(?:{_words(nouns)}){_E})",
        re.IGNORECASE,
    )


def _numerically_sized_pattern(catalog: Catalog) -> re.Pattern[str]:
    """Items sold in numeric sizes (shoes, jeans): when one is named, "in 43" is a size."""
    nouns = [r"shoes?", r"sneakers?", r"trainers?", r"boots?"]
    for item in catalog.items:
        if any(size.isdigit() for size in item.attributes.sizes):
            nouns += [_surface_pattern(s) for s in (item.name, *item.aliases)]
    return re.compile(_B + "(?:" + _words(nouns) + ")" + _E, re.IGNORECASE)


_PATTERN_CACHE: dict[int, tuple[Catalog, _CatalogPatterns]] = {}
_PATTERN_CACHE_SIZE = 8


def _catalog_patterns(catalog: Catalog) -> _CatalogPatterns:
    # Keyed by identity (a Catalog is not hashable); the cache holds the catalog so its id stays unique.
    cached = _PATTERN_CACHE.get(id(catalog))
    if cached is not None and cached[0] is catalog:
        return cached[1]
    patterns = _CatalogPatterns(
        _product_patterns(catalog),
        _category_patterns(catalog),
        _quantity_pattern(catalog),
        _numerically_sized_pattern(catalog),
    )
    if len(_PATTERN_CACHE) >= _PATTERN_CACHE_SIZE:
        _PATTERN_CACHE.pop(next(iter(_PATTERN_CACHE)))
    _PATTERN_CACHE[id(catalog)] = (catalog, patterns)
    return patterns


# --- catalog-independent patterns ------------------------------------------------------------

_COLOR_RE = re.compile(_B + "(?:" + _words([re.escape(c) for c in _COLOR_NAMES]) + ")" + _E + _COLOR_NOT_BEFORE,
                       re.IGNORECASE)  # fmt: skip
_CITY_RE = re.compile(_B + "(?:" + _words([re.escape(c) for c in _CITIES]) + ")" + _E, re.IGNORECASE)
# "nice" is mostly an adjective: the city only when capitalised and after a place preposition.
_NICE_RE = re.compile(r"(?:(?<=\bto )|(?<=\bin )|(?<=\bat )|(?<=\bfrom )|(?<=\bnear ))Nice\b")

_SIZE_AFTER_KEYWORD_RE = re.compile(
    r"\b(?:size|sz|taille|talla)\b\s*[:#=]?\s*(?:(?P<letter>xxs|xs|xxxl|xxl|xl|2xl|3xl|s|m|l)"
    r"|(?P<number>\d{1,2}(?:[.,]5)?))(?![\w.,]\d|\w)",
    re.IGNORECASE,
)
_SIZE_EU_RE = re.compile(
    r"\beu\s*(?P<a>\d{2}(?:[.,]5)?)(?![\w.,]\d|\w)|(?<![\w.,])(?P<b>\d{2}(?:[.,]5)?)\s*eu\b(?!r)", re.IGNORECASE
)
_SIZE_AFTER_IN_RE = re.compile(
    r"\bin\s+(?:an?\s+)?(?P<n>\d{2}(?:[.,]5)?)(?![\w.,]\d|\w)"
    r"(?!\s*(?:days?|weeks?|months?|hours?|h|mins?|minutes?|percent|eur|euros?|gb|tb|cm|mm|kg)\b|\s*[%€])",
    re.IGNORECASE,
)
_SIZE_WAIST_RE = re.compile(r"\b(?:waist\s*|w)(?P<n>[23]\d)\b", re.IGNORECASE)
_SIZE_LETTERS_RE = re.compile(r"(?<![\w'’&\-])(?:xxs|xs|xxxl|xxl|xl|2xl|3xl)(?![\w'’&\-])", re.IGNORECASE)
_SIZE_CAPITAL_RE = re.compile(r"(?<![\w'’&\-.])[SML](?![\w'’&\-]|\.\w)")
_SIZE_WORD_RE = re.compile(
    r"(?<![\w\-])(?:extra[\s-]?large|extra[\s-]?small|xx-large|x-large|x-small|large|medium|small)(?![\w\-])",
    re.IGNORECASE,
)
# "too small" is a complaint about fit, not a size choice.
_SIZE_WORD_NOT_AFTER = re.compile(r"\b(?:too|very|so|bit|quite|really|pretty|way|how|not|is|are|was|were|runs?)\s+$",
                                  re.IGNORECASE)  # fmt: skip
_SIZE_WORD_BEFORE = re.compile(
    r"\s*(?:$|[.,!?;:)/]|(?:one|ones|size|please|pls|plz|instead|then|for|in|and|or|would|is|fits?|will|should|"
    r"thanks|thx|maybe|if|t[\s-]?shirts?|tees?|shirts?|hoodies?|sweaters?|jackets?|jeans|pants|"
    + _words([re.escape(c) for c in _COLOR_NAMES])
    + r")\b)",
    re.IGNORECASE,
)

_STORAGE_UNIT_RE = re.compile(
    r"(?<![\w.,])(?P<n>\d{1,4})\s*(?P<unit>gb|gigs?|gigabytes?|go|tb|terabytes?|tera|g)(?!\w)(?!\s*(?:of\s+)?ram\b)",
    re.IGNORECASE,
)
_STORAGE_CONTEXT_RE = re.compile(
    r"(?<![\w.,])(?P<n>64|128|256|512|1024)(?=\s*(?:one|ones|version|model|variant|option|storage|memory)\b)"
    r"|\b(?:storage|memory|capacity)\s*[:=]?\s*(?P<m>64|128|256|512|1024)\b(?!\s*(?:gb|tb|g|go)\b)"
    r"|(?<=\bthe )(?P<t>64|128|256|512)(?=\s*(?:$|[.,!?]|pls\b|please\b|then\b|instead\b))",
    re.IGNORECASE,
)

# Not arithmetic: "3x = 10".
_QUANTITY_X_RE = re.compile(
    r"(?<![\w+\-*/^=])(?:[x×]\s?(?P<a>\d{1,2})|(?P<b>\d{1,2})[x×])(?![\w])(?!\s*[=+\-*/^]\s*\w)", re.IGNORECASE
)
_QUANTITY_KEYWORD_RE = re.compile(r"\b(?:qty|quantity)\s*[:=]?\s*(?P<n>\d{1,3})\b", re.IGNORECASE)
_QUANTITY_AFTER_VERB_RE = re.compile(
    rf"\b(?:take|buy|get|order|want|need|grab)\s+(?P<n>{_NUMBER})"
    r"(?=\s*(?:$|[.,!?;)]|pls\b|please\b|plz\b|then\b|thx\b|thanks\b))",
    re.IGNORECASE,
)

_ORDER_KEYWORD = (
    r"\b(?:order|ord|commande|pedido|tracking|ref|reference)(?:\s*(?:number|num|no\.?|nr\.?|id|ref))?\s*[:#]?\s*"
)
_ORDER_AFTER_KEYWORD_RE = re.compile(_ORDER_KEYWORD + r"(?P<id>#?\d{4,12})\b", re.IGNORECASE)
_ORDER_CODE_RE = re.compile(r"(?<![\w])#?(?P<prefix>ord|order)[-_](?P<digits>\d{4,12})\b", re.IGNORECASE)
_ORDER_HASH_RE = re.compile(r"(?<![\w#])#\s?(?P<digits>\d{4,10})\b")
_ORDER_BARE_RE = re.compile(r"(?<![\w+#.,/\-])(?P<digits>\d{6,10})(?![\w.,/\-]\d|\w)")

_CURRENCY_SYMBOLS = {"€": "EUR", "$": "USD", "£": "GBP"}
_CURRENCY_WORDS = {"eur": "EUR", "euro": "EUR", "euros": "EUR", "€": "EUR", "usd": "USD", "dollar": "USD",
                   "dollars": "USD", "$": "USD", "gbp": "GBP", "pound": "GBP", "pounds": "GBP", "quid": "GBP",
                   "£": "GBP", "chf": "CHF"}  # fmt: skip
_AMOUNT = r"\d{1,3}(?:[.,\s]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
_MONEY_RE = re.compile(
    rf"(?P<sym>[€$£])\s?(?P<a>{_AMOUNT})(?!\d)"
    rf"|(?<![\w.,])(?P<b>{_AMOUNT})\s?(?P<cur>€|\$|£|eur|euros?|usd|dollars?|gbp|pounds?|quid|chf|bucks)(?![\w])"
    rf"|\b(?P<code>eur|usd|gbp|chf)\s?(?P<c>{_AMOUNT})(?!\d)",
    re.IGNORECASE,
)
# A bare number is money after "budget"/"under" and before the end of the clause ("under 100?").
_MONEY_CONTEXT_RE = re.compile(
    r"(?:\bbudget(?:\s*[:=]|\s+(?:is|of|around|about|roughly|max|maximum|like|~))*"
    r"|\b(?:under|below|less than|up to|max|cheaper than))\s*~?\s*"
    r"(?P<a>\d{2,5})(?=\s*(?:$|[.,!?;)]|for\b|or\b|tops\b|max\b|pls\b|please\b|ish\b))",
    re.IGNORECASE,
)

_RELATIVE_DAYS = {"today": 0, "tonight": 0, "tomorrow": 1, "tmrw": 1, "tmr": 1, "tomorow": 1, "tommorow": 1,
                  "tommorrow": 1, "2moro": 1, "2morrow": 1, "yesterday": -1, "day after tomorrow": 2}  # fmt: skip
_RELATIVE_RE = re.compile(_B + "(?:" + _words(list(_RELATIVE_DAYS)) + ")" + _E, re.IGNORECASE)
_IN_DAYS_RE = re.compile(
    rf"\bin\s+(?P<n>\d{{1,2}}|a|{_words([w for w in _NUMBER_WORDS if ' ' not in w])})\s+(?P<unit>days?|weeks?)\b",
    re.IGNORECASE,
)
_WEEKDAY_RE = re.compile(
    # "black friday", "cyber monday", "good friday" are sales and holidays, not dates.
    r"(?<!black )(?<!cyber )(?<!good )\b(?:(?P<mod>next|this coming|this|coming|last)\s+)?"
    r"(?P<day>" + _words(list(_WEEKDAYS)) + r")s?\b"
    r"|\b(?P<mod2>next|this|last|on|by|until|till|til|since|coming)\s+"
    r"(?P<abbr>" + _words(list(_WEEKDAY_ABBREVIATIONS)) + r")\b",
    re.IGNORECASE,
)
# "hasn't moved in 3 days", "it arrived in 10 days": a duration, not a date.
_DURATION_CLAUSE_RE = re.compile(
    r"\b(?:not|no|never|nothing|\w+n[’']t|arrived|came|took|got|was|were|received|waited|waiting)\b[^,.;!?]*$",
    re.IGNORECASE,
)
_FUTURE_MODIFIERS = frozenset({"this", "coming", "this coming", "by", "until", "till", "til"})
_FUTURE_PREPOSITION_RE = re.compile(r"\b(?:by|until|till|til|before|for)\s+$", re.IGNORECASE)
_PAST_PREPOSITION_RE = re.compile(r"\bsince\s+$", re.IGNORECASE)
_NUMERIC_DATE_RE = re.compile(
    r"(?<![\w/.\-,])(?P<d>\d{1,2})(?P<sep>[/.\-])(?P<m>\d{1,2})(?:(?P=sep)(?P<y>\d{4}|\d{2}))?(?![\w/\-]|[.,]\d)"
)
_RATING_BEFORE_RE = re.compile(
    r"\b(?:rate|rated|rating|give|gave|solid|score|easy)\s*(?:it\s*|you\s*|a\s*)?$", re.IGNORECASE
)
_RATING_AFTER_RE = re.compile(
    r"\s*(?:$|!|would\b|stars?\b|rating\b|for\b|,?\s*(?:love|great|amazing|recommend))", re.IGNORECASE
)
_MONTH = _words(list(_MONTHS))
_DAY_MONTH_RE = re.compile(
    rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<month>{_MONTH})\b\.?(?:,?\s+(?P<y>\d{{4}}))?"
    rf"|\b(?P<month2>{_MONTH})\.?\s+(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y2>\d{{4}}))?",
    re.IGNORECASE,
)


# --- entity types ------------------------------------------------------------------------------


def _products(text: str, patterns: _CatalogPatterns) -> Iterator[_Candidate]:
    for pattern, item_id in patterns.products:
        for match in pattern.finditer(text):
            yield _Candidate("product", match.start(), match.end(), item_id)


def _categories(text: str, patterns: _CatalogPatterns) -> Iterator[_Candidate]:
    for pattern, category in patterns.categories:
        for match in pattern.finditer(text):
            yield _Candidate("category", match.start(), match.end(), category)


def _colors(text: str) -> Iterator[_Candidate]:
    for match in _COLOR_RE.finditer(text):
        word = re.sub(r"\s+", " ", match.group().lower())
        yield _Candidate("color", match.start(), match.end(), _COLOR_NORMAL.get(word, word))


def _cities(text: str) -> Iterator[_Candidate]:
    for match in _CITY_RE.finditer(text):
        yield _Candidate("city", match.start(), match.end(), _CITIES[re.sub(r"\s+", " ", match.group().lower())])
    for match in _NICE_RE.finditer(text):
        yield _Candidate("city", match.start(), match.end(), "Nice")


def _number_size(value: str) -> str | None:
    number = float(value.replace(",", "."))
    # EU shoes / jeans waist (20-52) or UK/US shoes (1-15, halves allowed).
    return value.replace(",", ".") if 20 <= number <= 52 or 1 <= number <= 15 else None


def _sizes(text: str, patterns: _CatalogPatterns) -> Iterator[_Candidate]:
    for match in _SIZE_AFTER_KEYWORD_RE.finditer(text):
        if match.group("letter"):
            yield _Candidate("size", *match.span("letter"), _LETTER_SIZES[match.group("letter").lower()])
        elif (size := _number_size(match.group("number"))) is not None:
            yield _Candidate("size", *match.span("number"), size)
    for match in _SIZE_EU_RE.finditer(text):
        group = "a" if match.group("a") else "b"
        if (size := _number_size(match.group(group))) is not None:
            yield _Candidate("size", *match.span(group), size)
    if patterns.numerically_sized.search(text):
        for match in _SIZE_AFTER_IN_RE.finditer(text):
            if (size := _number_size(match.group("n"))) is not None:
                yield _Candidate("size", *match.span("n"), size)
    for match in _SIZE_WAIST_RE.finditer(text):
        yield _Candidate("size", *match.span("n"), match.group("n"))
    for match in _SIZE_LETTERS_RE.finditer(text):
        yield _Candidate("size", match.start(), match.end(), _LETTER_SIZES[match.group().lower()])
    if not _mostly_capitals(text):
        for match in _SIZE_CAPITAL_RE.finditer(text):
            yield _Candidate("size", match.start(), match.end(), match.group())
    for match in _SIZE_WORD_RE.finditer(text):
        if _SIZE_WORD_NOT_AFTER.search(text[: match.start()]) or not _SIZE_WORD_BEFORE.match(text, match.end()):
            continue
        yield _Candidate("size", match.start(), match.end(), _WORD_SIZES[re.sub(r"[\s-]+", "", match.group().lower())])


def _mostly_capitals(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return len(letters) > 3 and sum(c.isupper() for c in letters) / len(letters) > 0.6


def _storage(text: str) -> Iterator[_Candidate]:
    for match in _STORAGE_UNIT_RE.finditer(text):
        number, unit = int(match.group("n")), match.group("unit").lower()
        if unit.startswith("t"):
            yield _Candidate("storage", match.start(), match.end(), f"{number}TB")
        elif unit in ("g", "go") and number not in _STORAGE_CAPACITIES:
            continue  # "5g" is a network, not a capacity
        elif 1 <= number <= 2048:
            yield _Candidate("storage", match.start(), match.end(), _capacity(number))
    for match in _STORAGE_CONTEXT_RE.finditer(text):
        group = next(g for g in ("n", "m", "t") if match.group(g))
        yield _Candidate("storage", *match.span(group), _capacity(int(match.group(group))))


def _capacity(gigabytes: int) -> str:
    return "1TB" if gigabytes == 1024 else f"{gigabytes}GB"


def _quantities(text: str, patterns: _CatalogPatterns) -> Iterator[_Candidate]:
    for match in patterns.quantity.finditer(text):
        if match.group("n").lower() == "one" and re.match(r"\s+of\b", text[match.end() :]):
            continue  # "which one of these" picks, it does not count
        yield _Candidate("quantity", *match.span("n"), _count(match.group("n")))
    for match in _QUANTITY_AFTER_VERB_RE.finditer(text):
        yield _Candidate("quantity", *match.span("n"), _count(match.group("n")))
    for match in _QUANTITY_X_RE.finditer(text):
        yield _Candidate("quantity", match.start(), match.end(), str(int(match.group("a") or match.group("b"))))
    for match in _QUANTITY_KEYWORD_RE.finditer(text):
        yield _Candidate("quantity", *match.span("n"), str(int(match.group("n"))))


def _count(words: str) -> str:
    words = re.sub(r"\s+", " ", words.lower())
    return str(int(words)) if words.isdigit() else str(_NUMBER_WORDS[words])


def _order_ids(text: str) -> Iterator[_Candidate]:
    for match in _ORDER_CODE_RE.finditer(text):
        normalized = f"{match.group('prefix').upper()}-{match.group('digits')}"
        yield _Candidate("order_id", match.start(), match.end(), normalized)
    for match in _ORDER_AFTER_KEYWORD_RE.finditer(text):
        yield _Candidate("order_id", *match.span("id"), match.group("id").lstrip("#"))
    for match in _ORDER_HASH_RE.finditer(text):
        yield _Candidate("order_id", match.start(), match.end(), match.group("digits"))
    for match in _ORDER_BARE_RE.finditer(text):
        digits = match.group("digits")
        if not (len(digits) == 10 and digits.startswith("0")):  # a phone number, not an order
            yield _Candidate("order_id", match.start(), match.end(), digits)


def _money(text: str, currency: str) -> Iterator[_Candidate]:
    for match in _MONEY_RE.finditer(text):
        if match.group("sym"):
            code, amount = _CURRENCY_SYMBOLS[match.group("sym")], match.group("a")
        elif match.group("cur"):
            word = match.group("cur").lower()
            code, amount = (currency if word == "bucks" else _CURRENCY_WORDS[word]), match.group("b")
        else:
            code, amount = match.group("code").upper(), match.group("c")
        if (normalized := _amount(amount)) is not None:
            yield _Candidate("money", match.start(), match.end(), f"{normalized} {code}")
    for match in _MONEY_CONTEXT_RE.finditer(text):
        yield _Candidate("money", *match.span("a"), f"{int(match.group('a'))} {currency}")


def _amount(raw: str) -> str | None:
    raw = raw.replace(" ", "")
    # "1,000" / "1.000" group thousands; "49,99" / "49.99" carry cents.
    if re.fullmatch(r"\d{1,3}(?:[.,]\d{3})+", raw):
        raw = re.sub(r"[.,]", "", raw)
    else:
        raw = re.sub(r"[.,](?=\d{3})", "", raw).replace(",", ".")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return None
    return str(value.quantize(Decimal(1))) if value == value.to_integral_value() else str(value.normalize())


def _dates(text: str, today: date) -> Iterator[_Candidate]:
    for match in _RELATIVE_RE.finditer(text):
        offset = _RELATIVE_DAYS[re.sub(r"\s+", " ", match.group().lower())]
        yield _Candidate("date", match.start(), match.end(), (today + timedelta(days=offset)).isoformat())
    for match in _IN_DAYS_RE.finditer(text):
        if _DURATION_CLAUSE_RE.search(text[: match.start()]):
            continue
        n = match.group("n").lower()
        count = 1 if n == "a" else int(n) if n.isdigit() else _NUMBER_WORDS[n]
        days = count * (7 if match.group("unit").lower().startswith("week") else 1)
        yield _Candidate("date", match.start(), match.end(), (today + timedelta(days=days)).isoformat())
    yield from _weekdays(text, today)
    for match in _NUMERIC_DATE_RE.finditer(text):
        if match.group() in ("24/7", "24-7") or _is_rating(text, match):
            continue
        if match.group("sep") == "." and not match.group("y") and len(match.group("m")) != 2:
            continue  # "9.5" is a half size or a price, not the 9th of May
        first, second = int(match.group("d")), int(match.group("m"))
        # Day first (European); "3/25" month first only with a slash ("10.30" is a time, not a date).
        if second > 12 and match.group("sep") != "/":
            continue
        day, month = (first, second) if second <= 12 else (second, first)
        if (resolved := _calendar_date(day, month, match.group("y"), today)) is not None:
            yield _Candidate("date", match.start(), match.end(), resolved.isoformat())
    for match in _DAY_MONTH_RE.finditer(text):
        day, month, year = (
            (match.group("d"), match.group("month"), match.group("y"))
            if match.group("d")
            else (match.group("d2"), match.group("month2"), match.group("y2"))
        )
        if (resolved := _calendar_date(int(day), _MONTHS[month.lower()], year, today)) is not None:
            yield _Candidate("date", match.start(), match.end(), resolved.isoformat())


def _is_rating(text: str, match: re.Match[str]) -> bool:
    """A score, not a date: "10/10 would buy again", "rated it 4/5"."""
    first, second = int(match.group("d")), int(match.group("m"))
    if match.group("y") or match.group("sep") != "/" or second not in (5, 10) or first > second:
        return False
    return bool(_RATING_BEFORE_RE.search(text[: match.start()]) or _RATING_AFTER_RE.match(text, match.end()))


def _weekdays(text: str, today: date) -> Iterator[_Candidate]:
    for match in _WEEKDAY_RE.finditer(text):
        if match.group("day"):
            modifier, weekday, start = match.group("mod"), _WEEKDAYS.index(match.group("day").lower()), match.start()
        else:
            modifier, weekday = match.group("mod2"), _WEEKDAY_ABBREVIATIONS[match.group("abbr").lower()]
            # "on sat": the preposition is not part of the date; "next sat" is.
            in_span = modifier.lower() in ("next", "this", "last", "coming")
            start = match.start() if in_span else match.start("abbr")
        modifier = (modifier or "").lower()
        before = text[:start]
        if modifier == "next":
            # "next friday" is the friday of next week.
            monday_next_week = today + timedelta(days=7 - today.weekday())
            resolved = monday_next_week + timedelta(days=weekday)
        elif modifier in _FUTURE_MODIFIERS or _FUTURE_PREPOSITION_RE.search(before):
            resolved = today + timedelta(days=(weekday - today.weekday() - 1) % 7 + 1)
        elif modifier in ("last", "since") or _PAST_PREPOSITION_RE.search(before):
            resolved = today - timedelta(days=(today.weekday() - weekday - 1) % 7 + 1)
        else:
            # "on friday" could be last friday (when I ordered) or the next one (when it arrives).
            yield _Candidate("date", start, match.end(), _WEEKDAYS[weekday])
            continue
        yield _Candidate("date", start, match.end(), resolved.isoformat())


def _calendar_date(day: int, month: int, year: str | None, today: date) -> date | None:
    # No year: the occurrence closest to today ("03/01" in late December is next January).
    years = [int(year) + (2000 if len(year) == 2 else 0)] if year else [today.year - 1, today.year, today.year + 1]
    options = []
    for candidate_year in years:
        try:
            options.append(date(candidate_year, month, day))
        except ValueError:
            continue  # 31/02, or 29/02 outside a leap year
    return min(options, key=lambda d: abs((d - today).days), default=None)


def _bare_answer(text: str, awaiting_slot: str | None) -> Iterator[_Candidate]:
    """A short answer to the question the bot asked: "42", "two", "256", "L pls"."""
    values = [m for m in re.finditer(r"[^\W_]+(?:[.,]5)?", text) if m.group().lower() not in _FILLERS]
    if len(values) != 1:
        return
    match = values[0]
    token = match.group().lower()
    if awaiting_slot in (None, "size") and token in _LETTER_SIZES:
        yield _Candidate("size", match.start(), match.end(), _LETTER_SIZES[token])
    if awaiting_slot == "size" and re.fullmatch(r"\d{1,2}(?:[.,]5)?", token) and (size := _number_size(token)):
        yield _Candidate("size", match.start(), match.end(), size)
    elif awaiting_slot == "quantity" and (token.isdigit() and 0 < int(token) < 100 or token in _NUMBER_WORDS):
        yield _Candidate("quantity", match.start(), match.end(), _count(token))
    elif awaiting_slot == "storage" and token.isdigit() and int(token) in _STORAGE_CAPACITIES:
        yield _Candidate("storage", match.start(), match.end(), _capacity(int(token)))
    elif awaiting_slot == "order_id" and token.isdigit() and 4 <= len(token) <= 12:
        yield _Candidate("order_id", match.start(), match.end(), token)


# --- assembly ---------------------------------------------------------------------------------


def _resolve_overlaps(candidates: list[_Candidate]) -> list[_Candidate]:
    ranked = sorted(candidates, key=lambda c: (-(c.end - c.start), -TYPE_PRIORITY[c.type], c.start))
    chosen: list[_Candidate] = []
    for candidate in ranked:
        if all(candidate.end <= c.start or candidate.start >= c.end for c in chosen):
            chosen.append(candidate)
    return sorted(chosen, key=lambda c: c.start)


def extract_entities(
    text: str, catalog: Catalog, *, today: date | None = None, awaiting_slot: str | None = None
) -> list[Entity]:
    """Entities in `text`, in order of appearance, never overlapping.

    `today` anchors relative dates (default: the current date); `awaiting_slot` is the slot the bot
    just asked for, which lets a bare "42" or "2" be read as a size or a quantity.
    """
    today = today or date.today()
    patterns = _catalog_patterns(catalog)
    candidates = [
        *_products(text, patterns),
        *_categories(text, patterns),
        *_sizes(text, patterns),
        *_colors(text),
        *_storage(text),
        *_quantities(text, patterns),
        *_order_ids(text),
        *_money(text, catalog.currency),
        *_cities(text),
        *_dates(text, today),
        *_bare_answer(text, awaiting_slot),
    ]
    return [
        Entity(type=c.type, value=text[c.start : c.end], start=c.start, end=c.end, normalized=c.normalized)
        for c in _resolve_overlaps(candidates)
    ]
