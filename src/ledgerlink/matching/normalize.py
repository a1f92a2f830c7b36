"""Normalization of party fields into comparable values, and the normalized party.

Every normalizer is a pure function, idempotent (normalizing a normalized value returns it
unchanged) and returns None for a value that carries no usable evidence, so that a missing or
meaningless field is never counted as agreement or disagreement:

- company names: case and accents folded, punctuation removed, ``&`` read as ``and``, a leading
  ``The`` and legal forms of many countries (Inc, GmbH, S.A., Pty Ltd, Oy, KK, Sp. z o.o., ...)
  removed, common word variants unified (International -> intl);
- e-mail addresses: lower case, ``+tag`` removed; the domain counts as company evidence only when
  it is not a free-mail provider;
- phones: E.164 via ``phonenumbers``, the record's country as default region;
- countries: ISO 3166-1 alpha-2 from names, alpha-2/alpha-3 codes and common aliases
  (``pycountry``);
- websites: registrable domain (``https://www.shop.acme.co.uk/x`` -> ``acme.co.uk``);
- tax ids: upper-case alphanumerics without the VAT country prefix of the record's country.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

import phonenumbers
import pycountry

from ledgerlink.matching._vocab import (
    COUNTRY_ALIASES,
    FREE_MAIL_BRANDS,
    FREE_MAIL_DOMAINS,
    LEGAL_SUFFIXES,
    MULTI_PART_SUFFIXES,
    NAME_ABBREVIATIONS,
    STREET_ABBREVIATIONS,
)
from ledgerlink.matching.party import PartyRecord, PartyRef

__all__ = [
    "NormalizedParty",
    "company_email_domain",
    "fold_text",
    "is_free_mail_domain",
    "normalize_city",
    "normalize_country",
    "normalize_email",
    "normalize_name",
    "normalize_party",
    "normalize_phone",
    "normalize_postal_code",
    "normalize_street",
    "normalize_tax_id",
    "registrable_domain",
]

# Letters that Unicode decomposition leaves alone but people write without the mark.
_EXTRA_FOLDS = str.maketrans(
    {
        "ø": "o",
        "æ": "ae",
        "œ": "oe",
        "ł": "l",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "\u0131": "i",
        "ħ": "h",
    }
)
_APOSTROPHES = re.compile(r"['\u2019\u2018`\u00b4]")
# Dotted single-letter abbreviations: "S.A.", "s. p. a.", "B.V" -> "SA", "spa", "BV".
_DOTTED_INITIALS = re.compile(r"(?<![^\W_])(?:[^\W_]\.\s?){1,}[^\W_](?![^\W_])\.?")
_NON_ALNUM = re.compile(r"[\W_]+")
# Legal forms grouped by their last token, longest first, so stripping checks only a few.
_SUFFIXES_BY_LAST: dict[str, list[tuple[str, ...]]] = {}
for _form in LEGAL_SUFFIXES:
    _SUFFIXES_BY_LAST.setdefault(_form[-1], []).append(_form)
_VAT_PREFIX_EXCEPTIONS = {"GR": "EL"}  # Greece's VAT numbers start with EL, not GR
# VAT number prefixes of the EU member states, the UK, Switzerland and Norway.
_VAT_PREFIXES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "EL",
        "ES",
        "FI",
        "FR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
        "XI",
        "GB",
        "CH",
        "NO",
    ]
)
_MIN_VAT_DIGITS = 6


def fold_text(text: str) -> str:
    """Return ``text`` case-folded and without accents (``Société`` -> ``societe``).

    Args:
        text: any string.

    Returns:
        The folded string; folding it again returns it unchanged.
    """
    if text.isascii():
        return text.lower()  # ASCII has no accents, and lower() is its case fold
    previous = None
    while previous != text:
        previous = text
        decomposed = unicodedata.normalize("NFKD", text.casefold())
        text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
        text = text.translate(_EXTRA_FOLDS)
    return text


def _tokens(text: str) -> list[str]:
    text = _APOSTROPHES.sub("", fold_text(text))
    text = text.replace("&", " and ").replace("+", " and ")
    text = _DOTTED_INITIALS.sub(lambda m: m.group(0).replace(".", "").replace(" ", ""), text)
    return _NON_ALNUM.sub(" ", text).split()


def _strip_legal_forms(tokens: list[str]) -> list[str]:
    changed = True
    while changed:
        changed = False
        if len(tokens) > 1 and tokens[0] == "the":
            tokens = tokens[1:]
            changed = True
        for form in _SUFFIXES_BY_LAST.get(tokens[-1], ()) if tokens else ():
            if len(tokens) > len(form) and tuple(tokens[-len(form) :]) == form:
                tokens = tokens[: -len(form)]
                changed = True
                break
        if len(tokens) > 1 and tokens[-1] == "and":
            tokens = tokens[:-1]
            changed = True
    return tokens


@functools.lru_cache(maxsize=65536)
def normalize_name(name: str | None) -> str | None:
    """Normalize a company name for comparison.

    ``The Acme Company, Inc.``, ``ACME Co`` and ``Acme & Co. GmbH`` all become ``acme``.

    Args:
        name: the name as typed.

    Returns:
        Space-separated lower-case tokens, or None when nothing remains.
    """
    if not name:
        return None
    tokens = [NAME_ABBREVIATIONS.get(token, token) for token in _tokens(name)]
    tokens = _strip_legal_forms(tokens)
    return " ".join(tokens) or None


def normalize_email(email: str | None) -> str | None:
    """Normalize an e-mail address: trimmed, lower case, without ``mailto:`` and ``+tag``.

    Args:
        email: the address as stored.

    Returns:
        ``local@domain``, or None when the value is not an address.
    """
    if not email:
        return None
    text = email.strip().lower()
    text = text.removeprefix("mailto:").strip("<> ")
    local, at, domain = text.rpartition("@")
    if not at or not local or "." not in domain or " " in text:
        return None
    local = local.split("+", 1)[0]
    domain = domain.strip(".")
    if not local or not domain:
        return None
    return f"{local}@{domain}"


def is_free_mail_domain(domain: str) -> bool:
    """Tell whether ``domain`` belongs to a free-mail provider (gmail.com, gmx.de, ...).

    Args:
        domain: a registrable domain.

    Returns:
        True for free-mail providers, whose addresses are not evidence of a company.
    """
    return domain in FREE_MAIL_DOMAINS or domain.split(".", 1)[0] in FREE_MAIL_BRANDS


def company_email_domain(email: str | None) -> str | None:
    """Return the registrable domain of an address, or None for free-mail and invalid ones.

    Args:
        email: the address as stored.

    Returns:
        ``acme.co.uk`` for ``Jane+x@Mail.Acme.co.uk``; None for ``jane@gmail.com``.
    """
    normalized = normalize_email(email)
    if normalized is None:
        return None
    domain = registrable_domain(normalized.rpartition("@")[2])
    if domain is None or is_free_mail_domain(domain):
        return None
    return domain


@functools.lru_cache(maxsize=65536)
def registrable_domain(website: str | None) -> str | None:
    """Reduce a website, URL or host to its registrable domain.

    Uses a built-in list of common second-level public suffixes (co.uk, com.au, co.jp, ...).

    Args:
        website: ``https://www.acme.com/about``, ``shop.acme.co.uk``, ``acme.de:443`` ...

    Returns:
        ``acme.com``, ``acme.co.uk``, ``acme.de``; None for IP addresses and non-domains.
    """
    if not website:
        return None
    text = website.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = re.split(r"[/?#\s]", text, maxsplit=1)[0]
    text = text.rpartition("@")[2].split(":", 1)[0].strip(".")
    labels = [label for label in text.split(".") if label]
    if len(labels) < 2 or not all(re.fullmatch(r"[a-z0-9-]+|xn--[a-z0-9-]+", lb) for lb in labels):
        return None
    if labels[-1].isdigit():
        return None
    keep = 3 if ".".join(labels[-2:]) in MULTI_PART_SUFFIXES and len(labels) >= 3 else 2
    if keep == 2 and ".".join(labels[-2:]) in MULTI_PART_SUFFIXES:
        return None
    return ".".join(labels[-keep:])


@functools.lru_cache(maxsize=4096)
def normalize_country(country: str | None) -> str | None:
    """Resolve a country name or code to its ISO 3166-1 alpha-2 code.

    Args:
        country: ``Germany``, ``DE``, ``DEU``, ``Deutschland``, ``U.S.A.``, ``United Kingdom``...

    Returns:
        The alpha-2 code (``DE``), or None when the value names no country.
    """
    if not country or not country.strip():
        return None
    raw = country.strip()
    if len(raw) == 2 and raw.isalpha() and raw.isascii():
        found = pycountry.countries.get(alpha_2=raw.upper())
        if found is not None:
            return str(found.alpha_2)
    key = " ".join(_tokens(raw))
    if key in COUNTRY_ALIASES:
        return COUNTRY_ALIASES[key]
    for candidate in (raw, key):
        try:
            found = pycountry.countries.lookup(candidate)
        except LookupError:
            continue
        return str(found.alpha_2)
    return None


@functools.lru_cache(maxsize=65536)
def normalize_phone(phone: str | None, country: str | None = None) -> str | None:
    """Normalize a phone number to E.164.

    Args:
        phone: the number in any format (``+49 30 1234567``, ``(415) 555-0100``, ``030/123``).
        country: the record's country (any spelling), used as region for national numbers.

    Returns:
        ``+14155550100``, or None when the number is not a valid number for its region.
    """
    if not phone or not phone.strip():
        return None
    region = normalize_country(country)
    try:
        parsed = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def normalize_tax_id(tax_id: str | None, country: str | None = None) -> str | None:
    """Normalize a tax or VAT id: upper-case alphanumerics, VAT country prefix removed.

    ``DE 123.456.789`` and ``123456789`` both become ``123456789``; ``ESB12345678`` becomes
    ``B12345678``.

    Args:
        tax_id: the id as typed.
        country: the record's country (any spelling); its VAT prefix is removed.

    Returns:
        The id, or None when it holds no digits.
    """
    if not tax_id:
        return None
    text = re.sub(r"[^0-9A-Z]", "", fold_text(tax_id).upper())
    code = normalize_country(country)
    prefixes = set(_VAT_PREFIXES)
    if code is not None:
        prefixes.add(_VAT_PREFIX_EXCEPTIONS.get(code, code))
    # The VAT prefix is dropped even when the record has no country, so that "DE123456789"
    # on one system and "123456789" on another agree; repeated until nothing changes.
    while text[:2] in prefixes and sum(ch.isdigit() for ch in text[2:]) >= _MIN_VAT_DIGITS:
        text = text[2:]
    if not any(ch.isdigit() for ch in text):
        return None
    return text


@functools.lru_cache(maxsize=65536)
def normalize_street(street: str | None) -> str | None:
    """Normalize a street address: folded, punctuation removed, common words abbreviated.

    Args:
        street: ``12 North Main Street, Suite 4``.

    Returns:
        ``12 n main st ste 4``, or None when empty.
    """
    if not street:
        return None
    previous, tokens = None, _tokens(street)
    while tokens != previous:
        previous, tokens = tokens, []
        for token in previous:
            for suffix in ("strasse", "str"):
                if token.endswith(suffix) and len(token) > len(suffix) + 2:
                    tokens.extend([token.removesuffix(suffix), "st"])
                    break
            else:
                tokens.append(STREET_ABBREVIATIONS.get(token, token))
    return " ".join(tokens) or None


@functools.lru_cache(maxsize=65536)
def normalize_city(city: str | None) -> str | None:
    """Normalize a city name: folded, punctuation removed (``Zürich`` -> ``zurich``).

    Args:
        city: the city as typed.

    Returns:
        The normalized city, or None when empty.
    """
    if not city:
        return None
    return " ".join(_tokens(city)) or None


@functools.lru_cache(maxsize=65536)
def normalize_postal_code(postal_code: str | None) -> str | None:
    """Normalize a postal code: upper-case alphanumerics (``sw1a 1aa`` -> ``SW1A1AA``).

    Args:
        postal_code: the code as typed.

    Returns:
        The code, or None when empty.
    """
    if not postal_code:
        return None
    return re.sub(r"[^0-9A-Z]", "", fold_text(postal_code).upper()) or None


@dataclass(frozen=True, slots=True)
class NormalizedParty:
    """A party with every field normalized, ready for blocking and comparison.

    Attributes:
        ref: the source record.
        name: normalized company name.
        emails: normalized addresses, free-mail included (an exact address is evidence),
            sorted and distinct.
        domains: company domains from the website and from non-free-mail addresses, sorted
            and distinct.
        phones: E.164 numbers, sorted and distinct.
        country: ISO alpha-2 code.
        city: normalized city.
        postal_code: normalized postal code.
        street: normalized street.
        tax_id: normalized tax id.
        xrefs: cross-references named by the record.
        updated_at: last modification in the source system.
    """

    ref: PartyRef
    name: str | None
    # Sorted tuples rather than frozensets: a one-element tuple takes 48 bytes, a frozenset
    # 216, and a million parties hold three of them each.
    emails: tuple[str, ...]
    domains: tuple[str, ...]
    phones: tuple[str, ...]
    country: str | None
    city: str | None
    postal_code: str | None
    street: str | None
    tax_id: str | None
    xrefs: tuple[PartyRef, ...]
    updated_at: datetime | None


def normalize_party(record: PartyRecord) -> NormalizedParty:
    """Normalize every field of a party record.

    Args:
        record: the party as mapped from its system.

    Returns:
        The normalized party; unusable values are dropped, never guessed.
    """
    country = normalize_country(record.country)
    emails = {e for e in (normalize_email(raw) for raw in record.emails) if e}
    domains = {d for d in (company_email_domain(e) for e in emails) if d}
    website = registrable_domain(record.website)
    if website is not None and not is_free_mail_domain(website):
        domains.add(website)
    phones = {p for p in (normalize_phone(raw, country) for raw in record.phones) if p}
    return NormalizedParty(
        ref=record.ref,
        name=normalize_name(record.name),
        emails=tuple(sorted(emails)),
        domains=tuple(sorted(domains)),
        phones=tuple(sorted(phones)),
        country=country,
        city=normalize_city(record.city),
        postal_code=normalize_postal_code(record.postal_code),
        street=normalize_street(record.street),
        tax_id=normalize_tax_id(record.tax_id, country),
        xrefs=record.xrefs,
        updated_at=record.updated_at,
    )
