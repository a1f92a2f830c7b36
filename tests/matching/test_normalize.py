"""Tests of the field normalizers: names, e-mails, phones, countries, domains, tax ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerlink.matching.normalize import (
    company_email_domain,
    fold_text,
    normalize_city,
    normalize_country,
    normalize_email,
    normalize_name,
    normalize_party,
    normalize_phone,
    normalize_postal_code,
    normalize_street,
    normalize_tax_id,
    registrable_domain,
)
from ledgerlink.matching.party import PartyRecord, PartyRef


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Acme Company, Inc.", "acme"),
        ("ACME Co", "acme"),
        ("Acme & Co. GmbH", "acme"),
        ("Acme Incorporated", "acme"),
        ("Acme Corp.", "acme"),
        ("Acme, LLC", "acme"),
        ("Acme L.L.C.", "acme"),
        ("Société Générale S.A.", "societe generale"),
        ("Müller GmbH & Co. KG", "muller"),
        ("Siemens AG", "siemens"),
        ("Danone SAS", "danone"),
        ("Boulangerie Paul S.A.R.L.", "boulangerie paul"),
        ("Philips N.V.", "philips"),
        ("Booking B.V.", "booking"),
        ("Atlassian Pty Ltd", "atlassian"),
        ("Canva Pty. Limited", "canva"),
        ("Tesco PLC", "tesco"),
        ("Nokia Oyj", "nokia"),
        ("Supercell Oy", "supercell"),
        ("Spotify AB", "spotify"),
        ("Equinor ASA", "equinor"),
        ("Ørsted A/S", "orsted"),
        ("Toyota K.K.", "toyota"),
        ("Sony Kabushiki Kaisha", "sony"),
        ("Fiat S.p.A.", "fiat"),
        ("Luxottica Srl", "luxottica"),
        ("Allegro Sp. z o.o.", "allegro"),
        ("Natura Ltda.", "natura"),
        ("Cemex S.A. de C.V.", "cemex"),
        ("Volvo Aktiebolag", "volvo"),
        ("Tesco Public Limited Company", "tesco"),
        ("Kone Osakeyhtiö", "kone"),
        ("Enel Società per Azioni", "enel"),
        ("Johnson and Johnson", "johnson and johnson"),
        ("Johnson & Johnson", "johnson and johnson"),
        ("McDonald's Corp", "mcdonalds"),
        ("Acme International Ltd", "acme intl"),
        ("ZÜRCHER Kantonalbank", "zurcher kantonalbank"),
        ("Straße AG", "strasse"),
        ("The Inc", "inc"),
        ("AG", "ag"),
        ("  ", None),
        (None, None),
    ],
)
def test_company_names_normalize_across_countries(raw: str | None, expected: str | None) -> None:
    """Legal forms of many countries, case, accents, punctuation and a leading The vanish."""
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jane.Doe+billing@Mail.Acme.co.uk", "jane.doe@mail.acme.co.uk"),
        (" mailto:BOB@ACME.COM ", "bob@acme.com"),
        ("<ap@acme.de>", "ap@acme.de"),
        ("not an email", None),
        ("nobody@localhost", None),
        ("", None),
    ],
)
def test_email_addresses_normalize(raw: str, expected: str | None) -> None:
    """Addresses are lower-cased without plus-tags; non-addresses give None."""
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jane@acme.com", "acme.com"),
        ("jane@billing.acme.co.uk", "acme.co.uk"),
        ("jane@gmail.com", None),
        ("jane@googlemail.com", None),
        ("jane@gmx.de", None),
        ("jane@yahoo.com.ar", None),
        ("jane@hotmail.fr", None),
        ("jane@outlook.com", None),
    ],
)
def test_free_mail_domains_are_not_company_evidence(raw: str, expected: str | None) -> None:
    """Only a company's own domain counts; free-mail providers give no domain."""
    assert company_email_domain(raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("(415) 555-0100", "USA", "+14155550100"),
        ("415.555.0100", "United States", "+14155550100"),
        ("+1 415 555 0100", None, "+14155550100"),
        ("030 1234567", "Germany", "+49301234567"),
        ("+49 (0)30 1234567", None, "+49301234567"),
        ("020 7946 0958", "UK", "+442079460958"),
        ("01 42 68 53 00", "France", "+33142685300"),
        ("03-1234-5678", "Japan", "+81312345678"),
        ("(11) 2345-6789", "Brasil", "+551123456789"),
        ("08-12 34 56", "Sverige", "+468123456"),
        ("123", "US", None),
        ("call me", "US", None),
        ("030 1234567", None, None),
    ],
)
def test_phones_normalize_to_e164_with_the_record_country(
    raw: str, country: str | None, expected: str | None
) -> None:
    """National numbers use the record's country as region; invalid numbers give None."""
    assert normalize_phone(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Germany", "DE"),
        ("DE", "DE"),
        ("de", "DE"),
        ("DEU", "DE"),
        ("Deutschland", "DE"),
        ("U.S.A.", "US"),
        ("United States of America", "US"),
        ("UK", "GB"),
        ("England", "GB"),
        ("United Kingdom", "GB"),
        ("The Netherlands", "NL"),
        ("Holland", "NL"),
        ("Côte d'Ivoire", "CI"),
        ("Korea, Republic of", "KR"),
        ("Brasil", "BR"),
        ("España", "ES"),
        ("Atlantis", None),
        ("", None),
    ],
)
def test_countries_resolve_to_iso_codes(raw: str, expected: str | None) -> None:
    """Names, alpha-2 and alpha-3 codes and common local spellings give the ISO alpha-2 code."""
    assert normalize_country(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://www.acme.com/about?x=1", "acme.com"),
        ("http://shop.acme.co.uk", "acme.co.uk"),
        ("acme.de:443", "acme.de"),
        ("WWW.ACME.COM.AU", "acme.com.au"),
        ("eu.store.acme.co.jp/path", "acme.co.jp"),
        ("acme.io", "acme.io"),
        ("http://192.168.0.1/", None),
        ("co.uk", None),
        ("localhost", None),
        ("", None),
    ],
)
def test_websites_reduce_to_registrable_domains(raw: str, expected: str | None) -> None:
    """Scheme, www, subdomains, ports and paths go; multi-part suffixes keep three labels."""
    assert registrable_domain(raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("DE 123.456.789", "Germany", "123456789"),
        ("DE123456789", None, "123456789"),
        ("123456789", "DE", "123456789"),
        ("EL 094014201", "Greece", "094014201"),
        ("ESB12345678", "ES", "B12345678"),
        ("GB 123 4567 89", None, "123456789"),
        ("12-3456789", "US", "123456789"),
        ("n/a", "US", None),
    ],
)
def test_tax_ids_normalize_without_vat_prefix(
    raw: str, country: str | None, expected: str | None
) -> None:
    """VAT ids compare equal with or without their country prefix and punctuation."""
    assert normalize_tax_id(raw, country) == expected


def test_addresses_normalize_words_and_codes() -> None:
    """Streets abbreviate common words, cities fold accents, postal codes lose spaces."""
    assert normalize_street("12 North Main Street, Suite 4") == "12 n main st ste 4"
    assert normalize_street("Hauptstraße 5") == normalize_street("Hauptstr. 5") == "haupt st 5"
    assert normalize_city("Zürich") == "zurich"
    assert normalize_postal_code("sw1a 1aa") == "SW1A1AA"


def test_party_normalization_keeps_only_evidence() -> None:
    """A party's free-mail address is kept as an address but gives no company domain."""
    party = normalize_party(
        PartyRecord(
            ref=PartyRef("stripe", "customer", "cus_1"),
            name="Acme GmbH",
            emails=("jane@gmail.com", "ap@acme.de"),
            phones=("030 1234567", "garbage"),
            website="https://www.acme.de",
            country="Deutschland",
            tax_id="DE123456789",
        )
    )
    assert party.emails == ("ap@acme.de", "jane@gmail.com")
    assert party.domains == ("acme.de",)
    assert party.phones == ("+49301234567",)
    assert (party.name, party.country, party.tax_id) == ("acme", "DE", "123456789")


_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40) | st.sampled_from(
    ["The Acme Co. Inc.", "S.A.", "Müller & Söhne GmbH", "ß", "İstanbul A.Ş."]
)


@given(_text)
def test_name_normalization_is_idempotent(raw: str) -> None:
    """Normalizing a normalized name changes nothing."""
    once = normalize_name(raw)
    assert normalize_name(once) == once


@given(_text)
def test_folding_and_address_normalization_are_idempotent(raw: str) -> None:
    """Folding, street, city and postal code normalization are fixed points."""
    assert fold_text(fold_text(raw)) == fold_text(raw)
    for normalize in (normalize_street, normalize_city, normalize_postal_code):
        once = normalize(raw)
        assert normalize(once) == once


@given(_text, st.sampled_from([None, "DE", "Greece", "Spain", "US"]))
def test_tax_id_normalization_is_idempotent(raw: str, country: str | None) -> None:
    """Normalizing a normalized tax id changes nothing."""
    once = normalize_tax_id(raw, country)
    assert normalize_tax_id(once, country) == once


@given(st.emails() | _text)
def test_email_and_domain_normalization_are_idempotent(raw: str) -> None:
    """Normalizing a normalized address or domain changes nothing."""
    once = normalize_email(raw)
    assert normalize_email(once) == once
    domain = registrable_domain(raw)
    assert registrable_domain(domain) == domain


@given(
    st.sampled_from(["Germany", "DE", "UK", "USA", "Japan", "Brasil"]),
    st.from_regex(r"\+?[0-9 ()\-]{6,16}", fullmatch=True),
)
def test_phone_normalization_is_idempotent(country: str, raw: str) -> None:
    """An E.164 number normalizes to itself."""
    once = normalize_phone(raw, country)
    assert normalize_phone(once, country) == once
