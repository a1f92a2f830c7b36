"""Loading mapping files: defaults, overrides, and every problem with its file and line."""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerlink.mapping import MappingError, check_mappings, default_mappings_dir, load_mappings
from ledgerlink.mapping.loader import Problem


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(folder: Path) -> list[Problem]:
    return check_mappings(folder)


def only(found: list[Problem]) -> Problem:
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_shipped_defaults_load_clean() -> None:
    """The shipped default mappings load without a single problem."""
    assert check_mappings() == []
    mappings = load_mappings()
    assert set(mappings.systems) == {"salesforce", "stripe", "quickbooks"}
    assert mappings.object_mapping("stripe", "customers") is not None
    assert mappings.source_of_truth("party", "name") is not None
    assert mappings.account("fees").type == "Expense"


def test_truth_order_puts_the_source_of_truth_first() -> None:
    """Survivorship order lists the source of truth, then the other systems mapping the field."""
    order = load_mappings().truth_order("party")
    assert order["name"] == ("salesforce", "quickbooks", "stripe")
    assert order["emails"] == ("stripe", "quickbooks")
    assert order["tax_ids"] == ("stripe",)


def test_item_for_prefers_the_most_specific_match() -> None:
    """A price id beats a lookup key, which beats a product name; nothing matched gives the default."""
    mappings = load_mappings()
    assert mappings.item_for(stripe_lookup_key="pro_eur", product_name="Starter").name == (  # type: ignore[union-attr]
        "Pro Subscription"
    )
    assert mappings.item_for(salesforce_product_code="STR-M").name == "Starter Subscription"  # type: ignore[union-attr]
    assert mappings.item_for(product_name="Consulting day").name == "Services"  # type: ignore[union-attr]


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    """A YAML syntax error is reported with the file and the line where parsing failed."""
    path = write(tmp_path, "stripe.yaml", "version: 1\nsystem: stripe\nobjects: a: b\n")
    problem = only(problems(tmp_path))
    assert problem.file == path
    assert problem.line == 3
    assert "YAML syntax error" in problem.reason
    assert "mapping values are not allowed" in problem.reason
    assert str(problem).startswith(f"{path}:3: ")


def test_unknown_key_is_located(tmp_path: Path) -> None:
    """A misspelt key in an object mapping is an unknown key at its own line."""
    write(
        tmp_path,
        "stripe.yaml",
        """
        objects:
          customers:
            entity: party
            feilds: {}
        """,
    )
    found = problems(tmp_path)
    assert any(p.line == 4 and "unknown key 'feilds'" in p.reason for p in found), found


def test_unknown_canonical_field_is_located(tmp_path: Path) -> None:
    """A mapping to a field the entity does not have names the field, the entity and the line."""
    write(
        tmp_path,
        "stripe.yaml",
        """
        objects:
          customers:
            fields:
              nickname: name
        """,
    )
    problem = only(problems(tmp_path))
    assert problem.line == 4
    assert "unknown field 'nickname'" in problem.reason
    assert "Party has no field" in problem.reason


def test_unknown_transform_is_located(tmp_path: Path) -> None:
    """An unknown transform is reported at the line of its entry, with the known ones."""
    write(
        tmp_path,
        "salesforce.yaml",
        """
        objects:
          Account:
            fields:
              name:
                from: Name
                transforms:
                  - strip
                  - titlecase
        """,
    )
    problem = only(problems(tmp_path))
    assert problem.line == 8
    assert "unknown transform 'titlecase'" in problem.reason
    assert "lowercase" in problem.reason


def test_bad_transform_parameter_is_located(tmp_path: Path) -> None:
    """A bad transform parameter is reported at the parameter's own line."""
    write(
        tmp_path,
        "quickbooks.yaml",
        """
        objects:
          Invoice:
            fields:
              total:
                from: TotalAmt
                transforms:
                  - money_decimal:
                      currency_from: CurrencyRef.value
                      currency: EURO
        """,
    )
    problem = only(problems(tmp_path))
    assert problem.line == 9
    assert "unknown currency" in problem.reason


def test_two_sources_of_truth_for_one_field(tmp_path: Path) -> None:
    """A field given two sources of truth is reported with both systems and both lines."""
    path = write(
        tmp_path,
        "shared.yaml",
        """
        source_of_truth:
          party:
            name: salesforce
            website: salesforce
            name: stripe
        """,
    )
    problem = only(problems(tmp_path))
    assert (problem.file, problem.line) == (path, 5)
    assert "two sources of truth for party.name: salesforce (line 3) and stripe (line 5)" in (
        problem.reason
    )


def test_write_to_a_field_whose_source_of_truth_is_the_target(tmp_path: Path) -> None:
    """Writing a field into its own source of truth is refused as a field the hub does not own."""
    write(
        tmp_path,
        "salesforce.yaml",
        """
        objects:
          Account:
            writes:
              Name: name
        """,
    )
    problem = only(problems(tmp_path))
    assert problem.line == 4
    assert "write to a field the hub does not own" in problem.reason
    assert "salesforce is the source of truth for party.name" in problem.reason


def test_write_to_a_field_without_source_of_truth(tmp_path: Path) -> None:
    """Writing a canonical field that has no source of truth is refused."""
    write(
        tmp_path,
        "stripe.yaml",
        """
        objects:
          customers:
            writes:
              description: legal_name_typo
              preferred_locales: metadata
        """,
    )
    found = problems(tmp_path)
    assert [p.line for p in found] == [4, 5]
    assert "unknown field 'legal_name_typo'" in found[0].reason
    assert "names no source of truth for party.metadata" in found[1].reason


def test_unknown_hub_value(tmp_path: Path) -> None:
    """A write of a hub value that does not exist lists the hub values."""
    write(
        tmp_path,
        "salesforce.yaml",
        """
        objects:
          Account:
            writes:
              Churn__c: hub.churn_risk
        """,
    )
    problem = only(problems(tmp_path))
    assert problem.line == 4
    assert "unknown hub value 'hub.churn_risk'" in problem.reason
    assert "hub.mrr" in problem.reason


def test_unknown_entity_and_missing_keys(tmp_path: Path) -> None:
    """A new object with an unknown entity and without fields gets both problems located."""
    write(
        tmp_path,
        "stripe.yaml",
        """
        objects:
          dispute:
            entity: chargeback
        """,
    )
    found = problems(tmp_path)
    reasons = {p.reason: p.line for p in found}
    assert any("unknown entity 'chargeback'" in r and line == 3 for r, line in reasons.items())
    assert any("missing required key 'fields'" in r and line == 2 for r, line in reasons.items())


def test_source_of_truth_must_be_mapped_by_its_system(tmp_path: Path) -> None:
    """A source of truth whose system never maps the field is reported."""
    write(
        tmp_path,
        "shared.yaml",
        """
        source_of_truth:
          party:
            legal_name: stripe
        """,
    )
    problem = only(problems(tmp_path))
    assert problem.line == 3
    assert "stripe.yaml maps no party field to it" in problem.reason


def test_source_of_truth_unknown_system_and_field(tmp_path: Path) -> None:
    """A source of truth naming an unknown system or field is reported at its line."""
    write(
        tmp_path,
        "shared.yaml",
        """
        source_of_truth:
          party:
            name: hubspot
            colour: salesforce
        """,
    )
    found = problems(tmp_path)
    assert [p.line for p in found] == [3, 4]
    assert "unknown system 'hubspot'" in found[0].reason
    assert "unknown field 'colour'" in found[1].reason


def test_unknown_lookup_table(tmp_path: Path) -> None:
    """A lookup naming a table the file does not define is reported at the transform."""
    write(
        tmp_path,
        "salesforce.yaml",
        """
        objects:
          Quote:
            fields:
              status:
                from: Status
                transforms:
                  - lookup: {table: quote_states}
        """,
    )
    problem = only(problems(tmp_path))
    assert problem.line == 7
    assert "lookup table 'quote_states'" in problem.reason


def test_system_name_must_match_file_name(tmp_path: Path) -> None:
    """A system file whose system key differs from its file name is refused."""
    write(tmp_path, "stripe.yaml", "system: stripe_test\n")
    problem = only(problems(tmp_path))
    assert problem.line == 1
    assert "must match the file name" in problem.reason


def test_duplicate_keys_are_reported(tmp_path: Path) -> None:
    """A key written twice in one mapping is reported, since YAML would silently keep one."""
    write(
        tmp_path,
        "stripe.yaml",
        """
        objects:
          customers:
            entity: party
            entity: party
        """,
    )
    problem = only(problems(tmp_path))
    assert problem.line == 4
    assert "duplicate key 'entity' (first at line 3)" in problem.reason


def test_merge_keys_are_refused(tmp_path: Path) -> None:
    """YAML merge keys are refused with a clear reason rather than half-supported."""
    write(
        tmp_path,
        "accounts.yaml",
        """
        base: &base {type: Bank}
        accounts:
          bank: {<<: *base, name: Checking}
        """,
    )
    found = problems(tmp_path)
    assert any(p.line == 3 and "merge keys" in p.reason for p in found)


def test_products_refer_to_accounts_and_claim_each_product_once(tmp_path: Path) -> None:
    """An item's unknown income account and a lookup key claimed twice are both reported."""
    write(
        tmp_path,
        "products.yaml",
        """
        items:
          pro:
            income_account: services_income
          gold:
            name: Gold
            stripe_lookup_keys: [pro_usd]
        default_item: platinum
        """,
    )
    found = problems(tmp_path)
    lines = {p.line: p.reason for p in found}
    assert "income account 'services_income' is not a role" in lines[3]
    assert "claimed by items 'pro' and 'gold'" in lines[6]
    assert "default_item 'platinum'" in lines[7]


def test_accounts_need_every_role(tmp_path: Path) -> None:
    """A replaced accounts file without every role lists the missing roles."""
    write(
        tmp_path,
        "accounts.yaml",
        """
        replace: true
        accounts:
          bank: {name: Checking, type: Bank}
          fees: {name: Fees, type: Expense}
        """,
    )
    problem = only(problems(tmp_path))
    assert problem.line == 2
    assert "missing account roles: receivable, revenue, clearing, payouts, refunds, disputes" in (
        problem.reason
    )


def test_account_type_must_be_a_quickbooks_type(tmp_path: Path) -> None:
    """An account type QuickBooks does not have is refused at its line."""
    write(tmp_path, "accounts.yaml", "accounts:\n  fees: {name: Fees, type: Expenses}\n")
    problem = only(problems(tmp_path))
    assert problem.line == 2
    assert "Expense" in problem.reason


def test_override_extends_the_default_field_by_field(tmp_path: Path) -> None:
    """A user file changes one field and keeps every other default field of the object."""
    write(
        tmp_path,
        "stripe.yaml",
        """
        objects:
          customers:
            fields:
              name: {from: description, transforms: [strip]}
              phones[0]: null
        """,
    )
    mappings = load_mappings(tmp_path)
    customer = mappings.object_mapping("stripe", "customers")
    assert customer is not None
    assert customer.fields["name"].from_ == "description"
    assert "phones[0]" not in customer.fields
    assert "emails[0]" in customer.fields
    assert mappings.object_mapping("stripe", "invoices") is not None
    assert mappings.origins["stripe"] == (
        default_mappings_dir() / "stripe.yaml",
        tmp_path / "stripe.yaml",
    )


def test_override_with_replace_drops_the_default(tmp_path: Path) -> None:
    """A user file with replace: true replaces the default file whole."""
    write(
        tmp_path,
        "stripe.yaml",
        """
        replace: true
        system: stripe
        objects:
          customers:
            entity: party
            fields:
              name: name
              emails[0]: email
              currency: currency
              tax_ids: {each: tax_ids.data, fields: {type: type, value: value}}
        """,
    )
    mappings = load_mappings(tmp_path)
    assert list(mappings.systems["stripe"].objects) == ["customers"]


def test_a_new_file_adds_a_system(tmp_path: Path) -> None:
    """A user file with a new name maps another connector's objects."""
    write(
        tmp_path,
        "hubspot.yaml",
        """
        system: hubspot
        objects:
          companies:
            entity: party
            fields:
              name: {from: properties.name, required: true}
              website: properties.domain
        """,
    )
    mapping = load_mappings(tmp_path).object_mapping("hubspot", "companies")
    assert mapping is not None
    assert mapping.entity == "party"


def test_problems_in_a_merged_file_point_at_the_users_file(tmp_path: Path) -> None:
    """A problem introduced by an override is reported in the user's file, not the default."""
    path = write(
        tmp_path,
        "quickbooks.yaml",
        """
        objects:
          Customer:
            fields:
              name: {from: DisplayName, transforms: [strip, {split: {index: x}}]}
        """,
    )
    problem = only(problems(tmp_path))
    assert problem.file == path
    assert problem.line == 4


def test_load_mappings_raises_with_every_problem(tmp_path: Path) -> None:
    """load_mappings raises one MappingError listing all problems, one per line."""
    write(tmp_path, "stripe.yaml", "objects:\n  customers:\n    fields: {nope: name}\n")
    write(tmp_path, "shared.yaml", "source_of_truth:\n  party:\n    name: nobody\n")
    with pytest.raises(MappingError) as caught:
        load_mappings(tmp_path)
    assert len(caught.value.problems) == 2
    assert str(caught.value).count("\n") == 2


def test_missing_user_folder_is_a_problem(tmp_path: Path) -> None:
    """Pointing mappings_dir at a folder that does not exist is reported."""
    problem = only(problems(tmp_path / "nowhere"))
    assert "does not exist" in problem.reason


_KEYS = st.sampled_from(
    [
        "objects",
        "customer",
        "Account",
        "entity",
        "fields",
        "from",
        "transforms",
        "each",
        "writes",
        "name",
        "emails[0]",
        "party",
        "currency",
        "system",
        "version",
        "tables",
        "source_of_truth",
        "replace",
        "const",
        "where",
        "required",
        "money_minor",
        "strip",
        "default",
        "lookup",
        "table",
        "items",
        "accounts",
        "type",
        "x",
    ]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.text(max_size=8),
    _KEYS,
    st.sampled_from(["party", "invoice", "stripe", "salesforce", "address.line1", "$.currency"]),
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["stripe", "salesforce", "shared", "products", "accounts", "other"]),
    document=_DOCUMENTS,
    garbage=st.text(max_size=40),
    as_text=st.booleans(),
)
def test_random_documents_never_crash_the_loader(
    name: str, document: object, garbage: str, as_text: bool
) -> None:
    """Any YAML document, valid or not, either loads or yields problems that each have a line."""
    text = garbage if as_text else yaml.safe_dump(document, allow_unicode=True)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / f"{name}.yaml").write_text(text, encoding="utf-8")
        found = check_mappings(Path(folder))
    for problem in found:
        assert problem.line is not None, str(problem)
        assert problem.reason
