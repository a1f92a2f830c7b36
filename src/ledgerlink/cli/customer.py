"""``ledgerlink customer``: one customer across every system, and why its records belong to it.

``customer show`` takes a customer id, any of its records (``SYSTEM:OBJECT:ID``), its golden
e-mail address or part of its name, and prints the golden record with the lineage of each
field, every linked source record, and each link with its method, score and evidence, as saved
by the last ``ledgerlink match run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ledgerlink.cli._common import fail, out
from ledgerlink.cli.match import open_engine, open_mappings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ledgerlink.matching import PartyRecord, PartyRef
    from ledgerlink.matching.persist import StoredLink

__all__ = ["app"]

app = typer.Typer(
    help="Look at a customer: its golden record, its records in every system, its links.",
    no_args_is_help=True,
)
_MAX_FOUND = 50


def _customer_table() -> Any:
    from ledgerlink.store import Customer

    return Customer.__table__  # type: ignore[attr-defined]


def _search(engine: Engine, email: str | None, name: str | None) -> str | None:
    """Return the id of the one customer found, or list several and return None."""
    from sqlalchemy import func, select

    table = _customer_table()
    query = select(table.c.id, table.c.display_name).order_by(table.c.display_name)
    if email is not None:
        wanted = func.lower(table.c.fields["email"].as_string()) == email.strip().lower()
    else:
        wanted = func.lower(table.c.display_name).like(f"%{(name or '').strip().lower()}%")
    with engine.connect() as conn:
        found = list(conn.execute(query.where(wanted).limit(_MAX_FOUND)))
    if not found:
        fail(f"no customer with {'e-mail' if email else 'a name like'} {email or name!r}")
    if len(found) == 1:
        return str(found[0].id)
    listing = Table("id", "name", title="customers found")
    for hit in found:
        listing.add_row(hit.id, hit.display_name)
    out.print(listing)
    return None


def _resolve(engine: Engine, target: str) -> str:
    """Return the customer id of an id or a record reference."""
    from ledgerlink.matching import PartyRef
    from ledgerlink.matching.persist import link_of

    if target.count(":") < 2:  # SYSTEM:OBJECT:ID has two colons at least
        return target
    try:
        ref = PartyRef.parse(target)
    except ValueError as exc:
        fail(str(exc))
    link = link_of(engine, ref)
    if link is None:
        fail(f"no customer holds {ref}; run `ledgerlink match run` after landing it")
    return link.customer_id


@app.command("show")
def show(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Argument(
            metavar="ID|REF", help="Customer id, or one of its records as SYSTEM:OBJECT:ID."
        ),
    ] = None,
    email: Annotated[
        str | None, typer.Option(help="Find the customer by its golden e-mail address.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Find customers whose name contains this text.")
    ] = None,
) -> None:
    """Show a customer: golden fields with lineage, its records, and the links with evidence.

    Give its id, one of its records, --email or --name; several customers found by name are
    listed instead.
    """
    from sqlalchemy import select

    from ledgerlink.mapping import Normalizer
    from ledgerlink.matching.persist import load_links, load_party

    if sum(x is not None for x in (target, email, name)) != 1:
        fail("give one of ID|REF, --email or --name")
    table = _customer_table()
    normalizer = Normalizer(open_mappings(ctx))
    with open_engine(ctx) as engine:
        customer_id = _search(engine, email, name) if target is None else _resolve(engine, target)
        if customer_id is None:
            return
        with engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.id == customer_id)).first()
        if row is None:
            fail(f"no customer {target}")
        links = load_links(engine, customer_id=customer_id)
        parties = {link.ref: load_party(engine, normalizer, link.ref) for link in links}
    out.print(f"[bold]{row.display_name}[/]  ({row.id}, version {row.version})")
    golden = Table("field", "value", "from", title="golden record")
    for field_name, value in row.fields.items():
        if value is not None:
            golden.add_row(field_name, str(value), str(row.lineage.get(field_name, "-")))
    out.print(golden)
    _print_records(links, parties)
    _print_links(links)


def _print_records(links: list[StoredLink], parties: dict[PartyRef, PartyRecord | None]) -> None:
    records = Table("record", "name", "e-mail", "status", title="records in every system")
    for link in links:
        party = parties[link.ref]
        records.add_row(
            str(link.ref),
            "-" if party is None else party.name or "-",
            "-" if party is None or not party.emails else party.emails[0],
            link.status,
        )
    out.print(records)


def _print_links(links: list[StoredLink]) -> None:
    evidence = Table("record", "method", "score", "joined with", "evidence", title="links")
    for link in links:
        for reason in link.reasons:
            kind = reason.get("kind")
            if kind == "alone":
                evidence.add_row(str(link.ref), "-", "-", "-", "the customer's only record")
            elif kind == "link":
                strongest = ", ".join(
                    f"{e['field']} {e['label']} {e['weight']:+.1f}"
                    for e in reason.get("evidence", [])
                    if e["label"] != "missing"
                )
                if reason.get("decided_by"):
                    strongest = f"decided by {reason['decided_by']}: {reason.get('why', '')}"
                evidence.add_row(
                    str(link.ref), link.method, f"{link.score:.3f}", reason["with"], strongest
                )
            elif kind == "review":
                evidence.add_row(
                    str(link.ref),
                    "review",
                    f"{reason['probability']:.3f}",
                    reason["b"] if reason["a"] == str(link.ref) else reason["a"],
                    f"{reason['reason']}: conflict {reason['conflict']}",
                )
    out.print(evidence)
