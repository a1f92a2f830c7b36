"""``ledgerlink customer``: one customer across every system, and why its records belong to it.

``customer show`` takes a customer id, any of its records (``SYSTEM:OBJECT:ID``), its golden
e-mail address or part of its name, and prints the golden record with the lineage of each
field, every linked source record, and each link with its method, score and evidence, as saved
by the last ``ledgerlink match run``.

``customer merge A B`` and ``customer split ID --record REF`` record a person's decisions
(``link`` or ``split`` between records, audited with who, when and why) that no later run
overrides, and apply them at once with a matching run. ``customer undo CHANGE`` revokes what a
merge or split recorded; ``customer history`` lists them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ledgerlink.cli._common import EXIT_CONFIG, fail, out
from ledgerlink.cli.match import default_actor, open_engine, open_mappings

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Engine

    from ledgerlink.matching import PartyRecord, PartyRef
    from ledgerlink.matching.persist import CustomerChange, MergePlan, SplitPlan, StoredLink

__all__ = ["app"]

app = typer.Typer(
    help=(
        "Look at a customer (its golden record, its records in every system, its links), "
        "merge two customers, split a record off one, and undo such changes."
    ),
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


# -- merge, split, undo ----------------------------------------------------------------------

_ActorOption = Annotated[
    str | None,
    typer.Option(help="Who decides [default: $LEDGERLINK_ACTOR or the login name]."),
]
_ReasonOption = Annotated[
    str | None,
    typer.Option(help="Why, in words; kept in the audit log (asked for when not given)."),
]
_YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (scripts).")
]


def _reason(reason: str | None, *, yes: bool) -> str:
    """Return the reason given, or ask for it; changes to customers are always audited."""
    if reason is None and yes:
        fail("give a --reason with --yes: merges and splits are audited", code=EXIT_CONFIG)
    text = reason if reason is not None else typer.prompt("reason")
    if not text.strip():
        fail("give a --reason: merges and splits are audited", code=EXIT_CONFIG)
    return text.strip()


def _confirm(question: str, *, yes: bool) -> None:
    if not yes and not typer.confirm(question, default=False):
        fail("nothing changed")


def _apply(work: Callable[[Callable[[str, int], None]], CustomerChange]) -> CustomerChange:
    """Run ``work`` (which re-runs matching) with a spinner showing its progress."""
    from ledgerlink.matching.persist import MatchStoreError

    with out.status("recording decisions") as status:
        counts: dict[str, int] = {}

        def advance(stage: str, count: int) -> None:
            counts[stage] = counts.get(stage, 0) + count
            status.update(f"matching: {stage} ({counts[stage]})")

        try:
            return work(advance)
        except MatchStoreError as exc:
            fail(str(exc))


def _print_change(change: CustomerChange, headline: str) -> None:
    out.print(headline)
    table = Table("record", "customer before", "customer now", title=change.action)
    for ref, (before, after) in change.placement.items():
        table.add_row(str(ref), before, after or "-")
    out.print(table)
    if change.decisions:
        verb = "revoked" if change.action == "undo" else "recorded"
        ids = ", ".join(str(d) for d in change.decisions)
        out.print(f"decisions {verb}: {ids}")
    if change.kept:
        out.print(f"already in force, left as they were: {', '.join(map(str, change.kept))}")
    summary = change.summary
    out.print(
        f"matching run: {summary.customers} customers, {summary.review_queue} in review, "
        f"{summary.rows_written} rows written"
    )
    if change.action != "undo":
        out.print(f"undo with `ledgerlink customer undo {change.operation}`")


def _print_merge_plan(plan: MergePlan) -> None:
    table = Table("customer", "name", "records", "after the merge", title="merge")
    table.add_row(
        plan.survivor,
        plan.survivor_name,
        "\n".join(map(str, plan.survivor_records)),
        "keeps its id (the older customer)",
    )
    table.add_row(
        plan.absorbed,
        plan.absorbed_name,
        "\n".join(map(str, plan.absorbed_records)),
        f"merged into {plan.survivor}",
    )
    out.print(table)
    out.print(
        f"will record {len(plan.absorbed_records)} link decision(s): {plan.anchor} with each record "
        f"of {plan.absorbed}"
    )


def _print_split_plan(plan: SplitPlan) -> None:
    table = Table(
        "record", "after the split", title=f"split {plan.customer_id} ({plan.customer_name})"
    )
    table.add_row(str(plan.record), "leaves; its own customer, or another one if evidence says so")
    for other in plan.others:
        table.add_row(str(other), f"stays in {plan.customer_id}")
    out.print(table)
    out.print(
        f"will record {len(plan.others)} split decision(s): {plan.record} with each other record"
    )


@app.command("merge")
def merge(
    ctx: typer.Context,
    first: Annotated[
        str, typer.Argument(metavar="A", help="Customer id, or one of its records (REF).")
    ],
    second: Annotated[
        str, typer.Argument(metavar="B", help="Customer id, or one of its records (REF).")
    ],
    reason: _ReasonOption = None,
    yes: _YesOption = False,
    actor: _ActorOption = None,
) -> None:
    """Merge two customers into one: the older customer's id survives.

    Records a `link` decision between one record of the survivor and each record of the
    other customer (audited; no later run separates them), then runs matching so that
    `customer show` shows one customer at once. Refused, with nothing written, when a split
    or never-link decision keeps records of the two apart. Undo with `customer undo`.
    """
    from ledgerlink.matching.persist import MatchStoreError, merge_customers, plan_merge

    mappings = open_mappings(ctx)
    who = actor or default_actor()
    with open_engine(ctx) as engine:
        ids = _resolve(engine, first), _resolve(engine, second)
        try:
            plan = plan_merge(engine, *ids)
        except MatchStoreError as exc:
            fail(str(exc))
        _print_merge_plan(plan)
        why = _reason(reason, yes=yes)
        _confirm(f"merge {plan.absorbed} into {plan.survivor}?", yes=yes)
        change = _apply(
            lambda progress: merge_customers(
                engine,
                mappings,
                *ids,
                actor=who,
                reason=why,
                now=datetime.now(UTC),
                progress=progress,
            )
        )
    _print_change(
        change,
        f"merged {plan.absorbed} into {change.customer_id} (change {change.operation}) by {who}",
    )


@app.command("split")
def split(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(metavar="ID", help="Customer id, or one of its records (REF).")
    ],
    record: Annotated[str, typer.Option(metavar="SYSTEM:OBJECT:ID", help="The record to detach.")],
    reason: _ReasonOption = None,
    yes: _YesOption = False,
    actor: _ActorOption = None,
) -> None:
    """Detach one record from a customer: it becomes its own customer, or joins another.

    Records a `split` decision between the record and each other record of the customer
    (audited; no later run puts it back), then runs matching. The customer keeps its id.
    Refused, with nothing written, when the record is not this customer's, is its only
    record, or a link decision joins it to the others. Undo with `customer undo`.
    """
    from ledgerlink.matching import PartyRef
    from ledgerlink.matching.persist import MatchStoreError, plan_split, split_record

    try:
        ref = PartyRef.parse(record)
    except ValueError as exc:
        fail(f"--record: {exc}", code=EXIT_CONFIG)
    mappings = open_mappings(ctx)
    who = actor or default_actor()
    with open_engine(ctx) as engine:
        customer_id = _resolve(engine, target)
        try:
            plan = plan_split(engine, customer_id, ref)
        except MatchStoreError as exc:
            fail(str(exc))
        _print_split_plan(plan)
        why = _reason(reason, yes=yes)
        _confirm(f"split {ref} from {customer_id}?", yes=yes)
        change = _apply(
            lambda progress: split_record(
                engine,
                mappings,
                customer_id,
                ref,
                actor=who,
                reason=why,
                now=datetime.now(UTC),
                progress=progress,
            )
        )
    _print_change(change, f"split {ref} from {customer_id} (change {change.operation}) by {who}")


@app.command("undo")
def undo(
    ctx: typer.Context,
    change_id: Annotated[
        int, typer.Argument(metavar="CHANGE", help="From `ledgerlink customer history`.")
    ],
    reason: _ReasonOption = None,
    yes: _YesOption = False,
    actor: _ActorOption = None,
) -> None:
    """Undo a merge or split: revoke the decisions it recorded, then run matching.

    A merged-away customer comes back with its id; from then on the evidence alone decides,
    as if the change had never been made.
    """
    from ledgerlink.matching.persist import undo_customer_change

    mappings = open_mappings(ctx)
    who = actor or default_actor()
    why = _reason(reason, yes=yes)
    _confirm(f"undo change {change_id}?", yes=yes)
    with open_engine(ctx) as engine:
        change = _apply(
            lambda progress: undo_customer_change(
                engine,
                mappings,
                change_id,
                actor=who,
                reason=why,
                now=datetime.now(UTC),
                progress=progress,
            )
        )
    _print_change(change, f"undid change {change_id} (change {change.operation}) by {who}")


@app.command("history")
def history(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Argument(metavar="[ID]", help="Only changes naming this customer."),
    ] = None,
) -> None:
    """List merges, splits and undos, newest first: change id, who, when, why."""
    from ledgerlink.matching.persist import list_customer_changes

    with open_engine(ctx) as engine:
        customer_id = None if target is None else _resolve(engine, target)
        rows = list_customer_changes(engine, customer_id=customer_id)
    if not rows:
        out.print("no merges or splits recorded")
        return
    table = Table("change", "action", "what", "by", "at", "reason", "decisions")
    for row in rows:
        details = row.details
        action = row.action.removeprefix("customer.")
        if action == "merge":
            what = f"{details.get('absorbed')} into {details.get('survivor')}"
        elif action == "split":
            what = f"{details.get('record')} from {details.get('customer')}"
        else:
            what = f"{row.subject.removeprefix('audit_log:')} ({details.get('undone', '')})"
        table.add_row(
            str(row.id),
            action,
            what,
            row.actor,
            row.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            str(details.get("reason", "")),
            ", ".join(str(d) for d in details.get("decisions", [])) or "-",
        )
    out.print(table)
