"""``ledgerlink mappings``: check the mapping files and show the effective mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table

from ledgerlink.cli._common import EXIT_FAILED, fail, out, state

__all__ = ["app"]

app = typer.Typer(
    help=(
        "Check and show the declarative mappings (mappings/*.yaml plus the folder named by "
        "mappings_dir in the config, whose files extend the defaults of the same name)."
    ),
    no_args_is_help=True,
)

_DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help=(
            "Your mappings folder (default: mappings_dir from the config; without one, the "
            "shipped defaults alone)."
        ),
        file_okay=False,
    ),
]


def _user_dir(ctx: typer.Context, directory: Path | None) -> Path | None:
    return directory if directory is not None else state(ctx).config().mappings_dir


@app.command("check")
def check(ctx: typer.Context, directory: _DirOption = None) -> None:
    """Validate the mappings and print every problem as file:line: reason.

    Checks YAML syntax, unknown keys and fields, unknown transforms and their parameters, two
    sources of truth for one field, writes to fields the hub does not own, and references
    between files. Exits 1 when there is any problem, 0 when the mappings load.
    """
    from ledgerlink.mapping import MappingError, default_mappings_dir, load_mappings

    user_dir = _user_dir(ctx, directory)
    try:
        mappings = load_mappings(user_dir)
    except MappingError as exc:
        for problem in exc.problems:
            out.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        out.print(f"{len(exc.problems)} problem(s)", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    objects = sum(len(system.objects) for system in mappings.systems.values())
    where = f"{default_mappings_dir()}" + (f" + {user_dir}" if user_dir else "")
    out.print(
        f"mappings OK: {len(mappings.systems)} systems, {objects} objects ({where})",
        markup=False,
        highlight=False,
    )


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            help="A system (salesforce, stripe, quickbooks) or shared, products, accounts."
        ),
    ],
    directory: _DirOption = None,
) -> None:
    """Print the effective mapping of a system after your overrides, and its sources of truth.

    The YAML shown is the merge of the default file and yours; the table lists the canonical
    fields whose source of truth is this system (the hub never writes those into it).
    """
    from ledgerlink.mapping import MappingError, load_mappings

    try:
        mappings = load_mappings(_user_dir(ctx, directory))
    except MappingError as exc:
        fail(f"the mappings have problems; run `ledgerlink mappings check`\n{exc}")
    document = mappings.documents.get(name)
    if document is None:
        known = ", ".join(sorted(mappings.documents))
        fail(f"no mapping named {name!r} (known: {known})")
    files = ", ".join(str(path) for path in mappings.origins.get(name, ()))
    out.print(f"# {name}: {files}", markup=False, highlight=False)
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    out.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
    if name not in mappings.systems:
        return
    table = Table("entity", "field", "on conflict", title=f"{name} is the source of truth for")
    for entity, rules in mappings.shared.source_of_truth.items():
        for field_name, rule in rules.items():
            if rule.system == name:
                table.add_row(entity, field_name, rule.on_conflict)
    out.print(table)
