"""Deterministic messy party data with known truth, for tests, benchmarks and demos.

:func:`generate_parties` invents companies in many countries and shows each of them the way
Salesforce (``Account``), Stripe (``customer``) and QuickBooks (``Customer``) would hold it,
with the noise real data has: legal-suffix variants (``GmbH``/``G.m.b.H.``/none), case,
dropped accents, typos, a leading ``The``, ``&`` versus ``and``, free-mail contacts, phone
formats, country names versus codes, missing fields, duplicate accounts, cross-references in
Stripe metadata (some stale, naming the wrong account), and hard negatives: the same name
used by another company in another country, and subsidiaries. The same seed always gives the
same data.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers

from ledgerlink.matching.party import PartyRecord, PartyRef

__all__ = ["Dataset", "Quality", "VendorRow", "evaluate", "generate_parties"]


@dataclass(frozen=True, slots=True)
class _Country:
    code: str
    spellings: tuple[str, ...]
    suffixes: tuple[tuple[str, ...], ...]  # variants of one legal form
    tld: str
    cities: tuple[tuple[str, str], ...]  # (city, postal code stem)
    street_word: str


_COUNTRIES: tuple[_Country, ...] = (
    _Country(
        "US",
        ("US", "USA", "United States", "United States of America", "U.S.A."),
        (("Inc", "Inc.", "Incorporated", ""), ("LLC", "L.L.C.", ""), ("Corp", "Corporation")),
        "com",
        (("New York", "100"), ("Austin", "787"), ("San Francisco", "941"), ("Chicago", "606")),
        "Street",
    ),
    _Country(
        "GB",
        ("GB", "United Kingdom", "UK", "England", "GBR"),
        (("Ltd", "Ltd.", "Limited", ""), ("PLC", "plc", "Public Limited Company")),
        "co.uk",
        (("London", "EC1A "), ("Manchester", "M1 "), ("Leeds", "LS1 ")),
        "Road",
    ),
    _Country(
        "DE",
        ("DE", "Germany", "Deutschland", "DEU"),
        (("GmbH", "G.m.b.H.", "gmbh", ""), ("AG", "A.G."), ("GmbH & Co. KG", "GmbH & Co KG")),
        "de",
        (("Berlin", "101"), ("München", "803"), ("Köln", "506"), ("Hamburg", "203")),
        "straße",
    ),
    _Country(
        "FR",
        ("FR", "France", "FRA"),
        (("SAS", "S.A.S.", ""), ("SA", "S.A."), ("SARL", "S.A.R.L.")),
        "fr",
        (("Paris", "750"), ("Lyon", "690"), ("Marseille", "130")),
        "Rue",
    ),
    _Country(
        "NL",
        ("NL", "Netherlands", "The Netherlands", "Holland"),
        (("B.V.", "BV", ""), ("N.V.", "NV")),
        "nl",
        (("Amsterdam", "101"), ("Rotterdam", "301"), ("Utrecht", "351")),
        "straat",
    ),
    _Country(
        "ES",
        ("ES", "Spain", "España"),
        (("S.L.", "SL", ""), ("S.A.", "SA")),
        "es",
        (("Madrid", "280"), ("Barcelona", "080"), ("Sevilla", "410")),
        "Calle",
    ),
    _Country(
        "IT",
        ("IT", "Italy", "Italia"),
        (("S.r.l.", "Srl", "SRL", ""), ("S.p.A.", "SpA")),
        "it",
        (("Milano", "201"), ("Roma", "001"), ("Torino", "101")),
        "Via",
    ),
    _Country(
        "SE",
        ("SE", "Sweden", "Sverige"),
        (("AB", "Aktiebolag", ""),),
        "se",
        (("Stockholm", "111"), ("Göteborg", "411"), ("Malmö", "211")),
        "gatan",
    ),
    _Country(
        "FI",
        ("FI", "Finland", "Suomi"),
        (("Oy", "OY", ""), ("Oyj", "OYJ")),
        "fi",
        (("Helsinki", "001"), ("Espoo", "021"), ("Tampere", "331")),
        "katu",
    ),
    _Country(
        "AU",
        ("AU", "Australia", "AUS"),
        (("Pty Ltd", "Pty. Ltd.", "Pty Limited", ""),),
        "com.au",
        (("Sydney", "200"), ("Melbourne", "300"), ("Brisbane", "400")),
        "Street",
    ),
    _Country(
        "JP",
        ("JP", "Japan", "JPN"),
        (("K.K.", "KK", "Kabushiki Kaisha", ""), ("Co., Ltd.", "Co Ltd")),
        "co.jp",
        (("Tokyo", "100"), ("Osaka", "530"), ("Kyoto", "600")),
        "Dori",
    ),
    _Country(
        "BR",
        ("BR", "Brazil", "Brasil"),
        (("Ltda", "Ltda.", ""), ("S.A.", "SA")),
        "com.br",
        (("São Paulo", "010"), ("Rio de Janeiro", "200"), ("Curitiba", "800")),
        "Rua",
    ),
    _Country(
        "CA",
        ("CA", "Canada", "CAN"),
        (("Inc", "Inc.", "Incorporated", ""), ("Ltd", "Limited")),
        "ca",
        (("Toronto", "M5H "), ("Montréal", "H2Y "), ("Vancouver", "V6B ")),
        "Avenue",
    ),
    _Country(
        "CH",
        ("CH", "Switzerland", "Schweiz", "Suisse"),
        (("AG", "A.G.", ""), ("SA", "S.A."), ("GmbH", "G.m.b.H.")),
        "ch",
        (("Zürich", "80"), ("Genève", "12"), ("Basel", "40")),
        "strasse",
    ),
    _Country(
        "PL",
        ("PL", "Poland", "Polska"),
        (("Sp. z o.o.", "Sp. z o. o.", "sp. z o.o.", ""), ("S.A.", "SA")),
        "pl",
        (("Warszawa", "00-"), ("Kraków", "30-"), ("Gdańsk", "80-")),
        "ulica",
    ),
)

# Every spelling the generator writes -> its ISO code (Stripe stores codes only).
_COUNTRY_CODE_OF = {spelling: c.code for c in _COUNTRIES for spelling in c.spellings}

_FIRST = [
    "Blue",
    "North",
    "Bright",
    "Silver",
    "Golden",
    "Nordic",
    "Alpine",
    "Crimson",
    "Quantum",
    "Vertex",
    "Lumen",
    "Atlas",
    "Pioneer",
    "Summit",
    "Harbor",
    "Cedar",
    "Granite",
    "Falcon",
    "Orion",
    "Polar",
    "Solar",
    "Urban",
    "Velvet",
    "Willow",
    "Zephyr",
    "Amber",
    "Beacon",
    "Cobalt",
    "Delta",
    "Ember",
    "Fjord",
    "Glacier",
    "Horizon",
    "Indigo",
    "Juniper",
    "Keystone",
    "Lotus",
    "Meridian",
    "Nimbus",
    "Oak",
    "Pinnacle",
    "Quarry",
    "Riverside",
    "Sterling",
    "Tundra",
    "Unity",
    "Vanguard",
    "Westwind",
    "Yellowstone",
    "Zenith",
    "Aurora",
    "Boreal",
    "Canyon",
    "Dune",
    "Evergreen",
    "Frontier",
    "Gale",
    "Highland",
    "Iron",
    "Jade",
    "Kestrel",
    "Lark",
    "Maple",
    "Nova",
    "Onyx",
    "Prairie",
    "Redwood",
    "Sapphire",
    "Timber",
    "Upland",
    "Vista",
    "Wren",
    "Élan",
    "Société",
    "Müller",
    "Crédit",
    "Señora",
    "Åker",
    "Ørsted",
    "Zürcher",
    "Café",
    "Bäcker",
    "Hôtel",
    "Façade",
    "Ñandú",
    "Łąka",
    "Straße",
]
_SECOND = [
    "Analytics",
    "Dynamics",
    "Systems",
    "Logistics",
    "Software",
    "Foods",
    "Labs",
    "Consulting",
    "Partners",
    "Holdings",
    "Networks",
    "Robotics",
    "Energy",
    "Media",
    "Health",
    "Capital",
    "Ventures",
    "Solutions",
    "Industries",
    "Textiles",
    "Brewing",
    "Outfitters",
    "Pharma",
    "Studios",
    "Freight",
    "Metals",
    "Optics",
    "Security",
    "Semiconductors",
    "Farms",
    "Aerospace",
    "Marine",
    "Mining",
    "Retail",
    "Travel",
    "Games",
    "Insurance",
    "Bank",
    "Motors",
    "Chemicals",
    "Design",
    "Print",
    "Telecom",
    "Water",
    "Cloud",
    "Data",
    "Digital",
    "Electric",
    "Foundry",
    "Garden",
    "Hardware",
    "Imaging",
]
# Syllables of invented brand words (Zantrix, Velora...): most real company names have one.
_SYLLABLES = [
    "an",
    "ar",
    "bel",
    "ca",
    "cor",
    "da",
    "del",
    "en",
    "fi",
    "gra",
    "ix",
    "ka",
    "lo",
    "lu",
    "ma",
    "mer",
    "na",
    "no",
    "or",
    "pa",
    "qui",
    "ra",
    "ri",
    "sa",
    "sol",
    "ta",
    "tec",
    "tri",
    "va",
    "vi",
    "xo",
    "zan",
    "zen",
]
_THIRD = ("", "", "", "", "Group", "International", "Technologies", "& Sons", "and Partners")
_PEOPLE = [
    "anna",
    "ben",
    "carla",
    "david",
    "eva",
    "frank",
    "gina",
    "hugo",
    "iris",
    "jonas",
    "kim",
    "lena",
    "marc",
    "nora",
    "omar",
    "paula",
]
_SURNAMES = [
    "smith",
    "meyer",
    "garcia",
    "rossi",
    "dubois",
    "tanaka",
    "silva",
    "kowalski",
    "nilsson",
    "virtanen",
]
_VAT_COUNTRIES = frozenset({"GB", "DE", "FR", "NL", "ES", "IT", "SE", "FI", "CH", "PL"})
_FREE_MAIL = ("gmail.com", "outlook.com", "yahoo.com", "gmx.de", "hotmail.co.uk", "icloud.com")
_ACCENTS = str.maketrans(
    "éèêëáàâäåóòôöøúùûüíìîïñçšžłńśąęÉÖÜÅØŁ", "eeeeaaaaaooooouuuuiiiincszlnsaeEOUAOL"
)


@dataclass(frozen=True, slots=True)
class _Company:
    key: str
    base: str
    country: _Country
    suffix_form: int
    domain: str
    phone: str
    street: str
    city: str
    postal_code: str
    tax_id: str
    person: str


@dataclass(frozen=True, slots=True)
class VendorRow:
    """One generated party as its system's API returns it, ready to land and map.

    Attributes:
        system: the connector name (``salesforce``, ``stripe``, ``quickbooks``).
        object: the object as the connector lands it (``Account``, ``customers``,
            ``Customer``), the key of its mapping in ``mappings/<system>.yaml``.
        id: the record's id in that system.
        payload: the record with the vendor's own field names.
    """

    system: str
    object: str
    id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Dataset:
    """Generated parties and their truth.

    Attributes:
        records: the parties of all three systems.
        truth: party -> key of the company it really is.
    """

    records: tuple[PartyRecord, ...]
    truth: dict[PartyRef, str]

    def vendor_rows(self) -> Iterator[VendorRow]:
        """Yield every party as the vendor's API holds it, in the order of ``records``.

        The payloads use the real field names that the shipped mappings read, so that the
        parties can go through the same path as landed data (mapping, then
        :func:`ledgerlink.matching.adapt.party_record`): a Salesforce ``Account`` (``Name``,
        ``Website``, ``Phone``, ``BillingStreet``, ``BillingCity``, ``BillingPostalCode``,
        ``BillingCountry``, ``LastModifiedDate``), a Stripe ``customer`` (``name``,
        ``email``, ``phone``, ``address``, ``metadata.salesforce_account_id``, ``tax_ids``
        as returned with ``expand[]=tax_ids``, ``created``) and a QuickBooks ``Customer``
        (``DisplayName``, ``CompanyName``, ``PrimaryEmailAddr``, ``PrimaryPhone``,
        ``WebAddr``, ``BillAddr``, ``MetaData``).

        Two values differ from ``records`` because the vendors hold them so: Stripe keeps an
        address's country as an ISO 3166-1 alpha-2 code, and QuickBooks masks a customer's
        tax id in API responses, so it is left out.

        Yields:
            One row per record.

        Raises:
            ValueError: a record belongs to a system or object the generator does not make.
        """
        for record in self.records:
            builder = _VENDOR_BUILDERS.get((record.ref.system, record.ref.object))
            if builder is None:
                msg = f"no vendor view for {record.ref.system}/{record.ref.object}"
                raise ValueError(msg)
            yield VendorRow(record.ref.system, record.ref.object, record.ref.id, builder(record))


def _salesforce_time(moment: datetime | None) -> str | None:
    """Salesforce REST date-times: ``2025-01-15T10:00:00.000+0000``."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _salesforce_account(record: PartyRecord) -> dict[str, Any]:
    """A Salesforce Account as ``/query`` returns it (empty fields are null)."""
    return {
        "Id": record.ref.id,
        "Name": record.name,
        "Website": record.website,
        "Phone": record.phones[0] if record.phones else None,
        "BillingStreet": record.street,
        "BillingCity": record.city,
        "BillingState": record.region,
        "BillingPostalCode": record.postal_code,
        "BillingCountry": record.country,
        "CreatedDate": _salesforce_time(record.updated_at),
        "LastModifiedDate": _salesforce_time(record.updated_at),
    }


def _stripe_customer(record: PartyRecord) -> dict[str, Any]:
    """A Stripe customer as ``GET /v1/customers?expand[]=data.tax_ids`` returns it."""
    country = None if record.country is None else _COUNTRY_CODE_OF[record.country]
    address_fields = (record.street, record.city, record.region, record.postal_code, country)
    address = (
        {
            "line1": record.street,
            "line2": None,
            "city": record.city,
            "state": record.region,
            "postal_code": record.postal_code,
            "country": country,
        }
        if any(address_fields)
        else None
    )
    tax_ids: list[dict[str, Any]] = []
    if record.tax_id:
        code = country or "unknown"
        tax_ids.append(
            {
                "id": f"txi_{record.ref.id.removeprefix('cus_')}",
                "object": "tax_id",
                "country": country,
                "type": _STRIPE_TAX_ID_TYPE.get(code, "unknown"),
                "value": record.tax_id,
                "customer": record.ref.id,
            }
        )
    accounts = [x.id for x in record.xrefs if (x.system, x.object) == ("salesforce", "Account")]
    metadata = {"salesforce_account_id": accounts[0]} if accounts else {}
    return {
        "id": record.ref.id,
        "object": "customer",
        "name": record.name,
        "email": record.emails[0] if record.emails else None,
        "phone": record.phones[0] if record.phones else None,
        "address": address,
        "metadata": metadata,
        "tax_ids": {
            "object": "list",
            "data": tax_ids,
            "has_more": False,
            "url": f"/v1/customers/{record.ref.id}/tax_ids",
        },
        "currency": None,
        "created": None if record.updated_at is None else int(record.updated_at.timestamp()),
        "livemode": False,
    }


def _quickbooks_customer(record: PartyRecord) -> dict[str, Any]:
    """A QuickBooks Online Customer as the query API returns it (absent fields are omitted)."""
    payload: dict[str, Any] = {
        "Id": record.ref.id,
        "SyncToken": "0",
        "Active": True,
        "DisplayName": record.name,
        "CompanyName": record.name,
    }
    if record.emails:
        payload["PrimaryEmailAddr"] = {"Address": record.emails[0]}
    if record.phones:
        payload["PrimaryPhone"] = {"FreeFormNumber": record.phones[0]}
    if record.website:
        payload["WebAddr"] = {"URI": record.website}
    address = {
        "Line1": record.street,
        "City": record.city,
        "CountrySubDivisionCode": record.region,
        "PostalCode": record.postal_code,
        "Country": record.country,
    }
    if any(address.values()):
        payload["BillAddr"] = {key: value for key, value in address.items() if value}
    if record.updated_at is not None:
        stamp = record.updated_at.isoformat()
        payload["MetaData"] = {"CreateTime": stamp, "LastUpdatedTime": stamp}
    return payload


_VENDOR_BUILDERS: dict[tuple[str, str], Callable[[PartyRecord], dict[str, Any]]] = {
    ("salesforce", "Account"): _salesforce_account,
    ("stripe", "customers"): _stripe_customer,
    ("quickbooks", "Customer"): _quickbooks_customer,
}
# Stripe's tax id type per country (https://docs.stripe.com/billing/customer/tax-ids).
_STRIPE_TAX_ID_TYPE = {
    "AU": "au_abn",
    "BR": "br_cnpj",
    "CA": "ca_bn",
    "CH": "ch_vat",
    "DE": "eu_vat",
    "ES": "eu_vat",
    "FI": "eu_vat",
    "FR": "eu_vat",
    "GB": "gb_vat",
    "IT": "eu_vat",
    "JP": "jp_cn",
    "NL": "eu_vat",
    "PL": "eu_vat",
    "SE": "eu_vat",
    "US": "us_ein",
}


def _coined(rng: random.Random) -> str:
    word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 3, 3))))
    return word.capitalize()


def _slug(text: str) -> str:
    return "".join(ch for ch in text.translate(_ACCENTS).lower() if ch.isalnum())


def _phone_number(rng: random.Random, code: str) -> str:
    example = phonenumbers.example_number(code)
    national = str(example.national_number) if example else "5550100"
    tail = "".join(str(rng.randrange(10)) for _ in range(4))
    cc = example.country_code if example else 1
    return f"+{cc}{national[:-4]}{tail}"


def _make_company(rng: random.Random, key: str, base: str, country: _Country) -> _Company:
    city, postal = rng.choice(country.cities)
    vat_prefix = country.code if country.code in _VAT_COUNTRIES else ""
    number = rng.randrange(1, 200)
    street_name = rng.choice(_FIRST)
    if country.street_word in ("straße", "straat", "gatan", "katu", "strasse"):
        street = f"{street_name}{country.street_word} {number}"
    elif country.street_word in ("Rue", "Calle", "Via", "Rua", "ulica"):
        street = f"{country.street_word} {street_name} {number}"
    else:
        street = f"{number} {street_name} {country.street_word}"
    return _Company(
        key=key,
        base=base,
        country=country,
        suffix_form=rng.randrange(len(country.suffixes)),
        domain=f"{_slug(base)}{rng.randrange(10)}.{country.tld}",
        phone=_phone_number(rng, country.code),
        street=street,
        city=city,
        postal_code=f"{postal}{rng.randrange(10, 99)}",
        tax_id=f"{vat_prefix}{rng.randrange(10**8, 10**9)}",
        person=f"{rng.choice(_PEOPLE)}.{rng.choice(_SURNAMES)}",
    )


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 5:
        return text
    i = rng.randrange(1, len(text) - 1)
    action = rng.randrange(3)
    if action == 0:
        return text[:i] + text[i + 1 :]
    if action == 1:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    return text[:i] + rng.choice("aeiourstln") + text[i + 1 :]


def _name_variant(rng: random.Random, company: _Company) -> str:
    base = company.base
    if rng.random() < 0.3:
        base = base.translate(_ACCENTS)
    if "&" in base and rng.random() < 0.5:
        base = base.replace("&", "and")
    elif " and " in base and rng.random() < 0.5:
        base = base.replace(" and ", " & ")
    if rng.random() < 0.08:
        base = _typo(rng, base)
    suffix = rng.choice(company.country.suffixes[company.suffix_form])
    name = f"{base} {suffix}".strip()
    if rng.random() < 0.05:
        name = "The " + name
    roll = rng.random()
    if roll < 0.1:
        name = name.upper()
    elif roll < 0.15:
        name = name.lower()
    if rng.random() < 0.1:
        name = name.replace(" ", ", ", 1) if suffix and name.endswith(suffix) else name
    return name


def _phone_variant(rng: random.Random, company: _Company) -> str:
    parsed = phonenumbers.parse(company.phone)
    roll = rng.random()
    if roll < 0.4:
        return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL))
    if roll < 0.8:
        fmt = phonenumbers.PhoneNumberFormat.INTERNATIONAL
        return str(phonenumbers.format_number(parsed, fmt))
    return company.phone


def _email(rng: random.Random, company: _Company, free_mail_rate: float) -> str:
    local = company.person
    if rng.random() < free_mail_rate:
        return f"{local.replace('.', '')}{rng.randrange(100)}@{rng.choice(_FREE_MAIL)}"
    if rng.random() < 0.3:
        local = rng.choice(("billing", "accounts", "finance", "ap")) + "+" + company.key[-3:]
    return f"{local}@{company.domain}"


def _when(rng: random.Random) -> datetime:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    return start + timedelta(minutes=rng.randrange(0, 60 * 24 * 600))


def _maybe(rng: random.Random, rate: float, value: str) -> str | None:
    return value if rng.random() < rate else None


def _country_text(rng: random.Random, company: _Company, rate: float) -> str | None:
    return _maybe(rng, rate, rng.choice(company.country.spellings))


def _make_roster(rng: random.Random, companies: int) -> list[_Company]:
    used: set[str] = set()
    roster: list[_Company] = []
    while len(roster) < companies:
        first = _coined(rng) if rng.random() < 0.6 else rng.choice(_FIRST)
        base = f"{first} {rng.choice(_SECOND)} {rng.choice(_THIRD)}".strip()
        if rng.random() < 0.3:
            base = f"{rng.choice(_FIRST)} {base}"
        if base in used:
            continue
        used.add(base)
        key = f"c{len(roster):07d}"
        company = _make_company(rng, key, base, rng.choice(_COUNTRIES))
        roster.append(company)
        if rng.random() < 0.04 and len(roster) < companies:
            # hard negative: another company with the same name in another country
            other = rng.choice([c for c in _COUNTRIES if c is not company.country])
            roster.append(_make_company(rng, f"c{len(roster):07d}", base, other))
        elif rng.random() < 0.02 and len(roster) < companies:
            # subsidiary in the same country: a different customer
            sub = f"{base} {rng.choice(('Holdings', 'Services', 'Digital', 'Retail'))}"
            if sub not in used:
                used.add(sub)
                roster.append(_make_company(rng, f"c{len(roster):07d}", sub, company.country))
    return roster


def _emit_records(
    rng: random.Random,
    company: _Company,
    sf_ids: list[str],
    stale_xref_rate: float,
) -> list[PartyRecord]:
    records: list[PartyRecord] = []
    in_sf, in_stripe, in_qb = rng.random() < 0.9, rng.random() < 0.7, rng.random() < 0.6
    if not (in_sf or in_stripe or in_qb):
        in_sf = True
    sf_id: str | None = None
    for dup in range(2 if rng.random() < 0.03 else 1):
        if not in_sf:
            break
        sf_id = f"001{len(sf_ids):012d}{dup}"
        sf_ids.append(sf_id)
        ref = PartyRef("salesforce", "Account", sf_id)
        records.append(
            PartyRecord(
                ref=ref,
                name=_name_variant(rng, company),
                phones=tuple(filter(None, [_maybe(rng, 0.7, _phone_variant(rng, company))])),
                website=_maybe(
                    rng,
                    0.8,
                    rng.choice(("https://www.", "http://", "", "www.")) + company.domain,
                ),
                country=_country_text(rng, company, 0.9),
                street=_maybe(rng, 0.7, company.street),
                city=_maybe(rng, 0.75, company.city),
                postal_code=_maybe(rng, 0.7, company.postal_code),
                updated_at=_when(rng),
            )
        )
    if in_stripe:
        ref = PartyRef("stripe", "customers", f"cus_{company.key}{rng.randrange(10**6):06d}")
        xrefs: tuple[PartyRef, ...] = ()
        if sf_id is not None and rng.random() < 0.5:
            target = sf_id
            if rng.random() < stale_xref_rate and len(sf_ids) > 1:
                target = rng.choice(sf_ids[:-1])
            xrefs = (PartyRef("salesforce", "Account", target),)
        records.append(
            PartyRecord(
                ref=ref,
                name=_name_variant(rng, company) if rng.random() < 0.9 else None,
                emails=(_email(rng, company, 0.3),),
                phones=tuple(filter(None, [_maybe(rng, 0.3, _phone_variant(rng, company))])),
                country=_country_text(rng, company, 0.6),
                street=_maybe(rng, 0.4, company.street),
                city=_maybe(rng, 0.4, company.city),
                postal_code=_maybe(rng, 0.4, company.postal_code),
                tax_id=_maybe(rng, 0.2, company.tax_id),
                xrefs=xrefs,
                updated_at=_when(rng),
            )
        )
    if in_qb:
        ref = PartyRef("quickbooks", "Customer", f"{company.key[1:]}{rng.randrange(100):02d}")
        tax = company.tax_id
        if company.country.code in _VAT_COUNTRIES and rng.random() < 0.5:
            tax = tax[2:]  # the VAT number without its country prefix
        records.append(
            PartyRecord(
                ref=ref,
                name=_name_variant(rng, company),
                emails=tuple(filter(None, [_maybe(rng, 0.8, _email(rng, company, 0.25))])),
                phones=tuple(filter(None, [_maybe(rng, 0.6, _phone_variant(rng, company))])),
                website=_maybe(rng, 0.3, company.domain),
                country=_country_text(rng, company, 0.8),
                street=_maybe(rng, 0.8, company.street),
                city=_maybe(rng, 0.8, company.city),
                postal_code=_maybe(rng, 0.8, company.postal_code),
                tax_id=_maybe(rng, 0.4, tax),
                updated_at=_when(rng),
            )
        )
    return records


def generate_parties(companies: int, *, seed: int = 7, stale_xref_rate: float = 0.03) -> Dataset:
    """Generate parties of ``companies`` companies across Salesforce, Stripe and QuickBooks.

    Args:
        companies: how many companies to invent (about 2.4 parties each).
        seed: random seed; the same seed gives the same data.
        stale_xref_rate: share of Stripe cross-references that name the wrong account.

    Returns:
        The records and the truth.
    """
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    records: list[PartyRecord] = []
    truth: dict[PartyRef, str] = {}
    sf_ids: list[str] = []
    for company in _make_roster(rng, companies):
        for record in _emit_records(rng, company, sf_ids, stale_xref_rate):
            truth[record.ref] = company.key
            records.append(record)
    return Dataset(tuple(records), truth)


@dataclass(frozen=True, slots=True)
class Quality:
    """How close predicted customers are to the truth, pair by pair and party by party.

    Pairwise figures count pairs of parties put in one customer; they weigh a big customer
    quadratically, so a single wrong merge of two large groups dominates them. B-cubed
    figures (Bagga and Baldwin, 1998) average over parties instead: for each party,
    precision is the share of its predicted customer that truly is its company, recall the
    share of its company that its predicted customer holds; every party counts once.

    Attributes:
        precision: pairwise precision (share of predicted pairs that are true).
        recall: pairwise recall (share of true pairs that were predicted).
        f1: harmonic mean of pairwise precision and recall.
        true_pairs: pairs of parties of the same company.
        predicted_pairs: pairs of parties put in the same customer.
        bcubed_precision: mean over parties of the true share of their predicted customer.
        bcubed_recall: mean over parties of the share of their company found with them.
        bcubed_f1: harmonic mean of B-cubed precision and recall.
    """

    precision: float
    recall: float
    f1: float
    true_pairs: int
    predicted_pairs: int
    bcubed_precision: float = 1.0
    bcubed_recall: float = 1.0
    bcubed_f1: float = 1.0


def _pairs_of(groups: Iterable[Iterable[PartyRef]]) -> set[tuple[PartyRef, PartyRef]]:
    pairs: set[tuple[PartyRef, PartyRef]] = set()
    for group in groups:
        ordered = sorted(group)
        pairs.update((a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :])
    return pairs


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _predicted_labels(
    customers: Iterable[Iterable[PartyRef]], truth: Mapping[PartyRef, str]
) -> dict[PartyRef, int]:
    """Number each predicted customer; parties of the truth that no customer holds stand alone.

    Raises:
        ValueError: a party is in two predicted customers.
    """
    label: dict[PartyRef, int] = {}
    for number, group in enumerate(customers):
        for ref in group:
            if ref in label:
                msg = f"{ref} is in two predicted customers"
                raise ValueError(msg)
            label[ref] = number
    alone = sorted(ref for ref in truth if ref not in label)
    first = max(label.values(), default=-1) + 1
    label.update({ref: first + offset for offset, ref in enumerate(alone)})
    return label


def _bcubed(label: Mapping[PartyRef, int], truth: Mapping[PartyRef, str]) -> tuple[float, float]:
    """B-cubed precision and recall over the parties of the truth.

    With n_ij parties in predicted customer i and true company j, a party there has
    precision n_ij / |i| and recall n_ij / |j|; summing over its n_ij parties gives
    n_ij**2 / |i| and n_ij**2 / |j|, so one pass over the cells suffices.
    """
    if not truth:
        return 1.0, 1.0
    cells = Counter((label[ref], key) for ref, key in truth.items())
    predicted_sizes = Counter(label[ref] for ref in truth)
    true_sizes = Counter(truth.values())
    precision = sum(n * n / predicted_sizes[i] for (i, _), n in cells.items())
    recall = sum(n * n / true_sizes[j] for (_, j), n in cells.items())
    return precision / len(truth), recall / len(truth)


def evaluate(customers: Iterable[Iterable[PartyRef]], truth: Mapping[PartyRef, str]) -> Quality:
    """Score predicted customers against the truth, pairwise and with B-cubed.

    Only the parties of ``truth`` are scored: members of a predicted customer that the truth
    does not know are ignored (for the B-cubed figures), and a party of the truth that no
    predicted customer holds counts as a customer of its own.

    Args:
        customers: member references of each predicted customer.
        truth: party -> true company key.

    Returns:
        Pairwise and B-cubed precision, recall and F1 (precision and recall are 1.0 when
        there is nothing to find or claim).

    Raises:
        ValueError: a party is in two predicted customers.
    """
    groups = [tuple(group) for group in customers]
    by_company: dict[str, list[PartyRef]] = {}
    for ref, key in truth.items():
        by_company.setdefault(key, []).append(ref)
    expected = _pairs_of(by_company.values())
    predicted = _pairs_of(groups)
    hits = len(expected & predicted)
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(expected) if expected else 1.0
    b_precision, b_recall = _bcubed(_predicted_labels(groups, truth), truth)
    return Quality(
        precision=precision,
        recall=recall,
        f1=_f1(precision, recall),
        true_pairs=len(expected),
        predicted_pairs=len(predicted),
        bcubed_precision=b_precision,
        bcubed_recall=b_recall,
        bcubed_f1=_f1(b_precision, b_recall),
    )
