"""Loading mapping files: defaults plus the user's folder, every problem with file and line.

:func:`load_mappings` reads the shipped defaults (``mappings/`` in the repository, or
``ledgerlink/mapping/defaults`` in an installed package) and, when given, the user's folder
(``mappings_dir`` in the configuration). :func:`check_mappings` does the same and returns the
problems instead of raising; ``ledgerlink mappings check`` prints them.

Overrides: a user file **extends** the default file of the same name by a deep merge. Mappings
merge key by key (so ``objects.customer.fields.name`` in the user's ``stripe.yaml`` replaces
only that field), any other value (a string, a list) replaces the default's, and a key set to
``null`` removes the default's entry. One field mapping (an entry under ``fields``) is replaced
whole, never merged with the default's, so ``name: {const: x}`` does not inherit a ``from``. A user file with ``replace: true`` replaces the default
file whole. A user file with a new name (``hubspot.yaml``) adds a system.

Every problem carries the file and line it comes from, found through PyYAML's composed nodes
(``start_mark``): YAML syntax errors, duplicate keys (including two sources of truth for one
field), unknown keys and fields, unknown transforms and bad parameters, writes to fields the hub
does not own, and references between files (an item's income account, a source of truth's
system).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ledgerlink.domain.entities import ENTITY_TYPES
from ledgerlink.mapping.schema import (
    FILE_KINDS,
    HUB_VALUES,
    AccountsFile,
    AccountSpec,
    FieldSpec,
    ItemSpec,
    ObjectMapping,
    ProductsFile,
    SharedFile,
    SystemFile,
    TransformSpecError,
    TruthRule,
    check_canonical_path,
    parse_transform,
    top_field,
)

__all__ = [
    "DEFAULT_MAPPINGS_DIR",
    "Location",
    "MappingError",
    "MappingSet",
    "Problem",
    "check_mappings",
    "default_mappings_dir",
    "load_mappings",
]

_PACKAGE_DEFAULTS = Path(__file__).resolve().parent / "defaults"
_REPOSITORY_DEFAULTS = Path(__file__).resolve().parents[3] / "mappings"
_MAX_DEPTH = 64
_MAX_FILE_BYTES = 2_000_000
_M = TypeVar("_M", bound=BaseModel)
# libyaml's composer is an order of magnitude faster and keeps the same marks.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Path_ = tuple[str | int, ...]


def default_mappings_dir() -> Path:
    """Return the folder of the shipped default mappings.

    An installed package carries them in ``ledgerlink/mapping/defaults``; a source checkout
    uses the repository's ``mappings/`` folder.
    """
    return _PACKAGE_DEFAULTS if _PACKAGE_DEFAULTS.is_dir() else _REPOSITORY_DEFAULTS


DEFAULT_MAPPINGS_DIR = default_mappings_dir()
"""The shipped defaults, resolved at import."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where a value was written: file and 1-based line."""

    file: Path
    line: int


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in the mappings: ``str()`` is ``file:line: reason``."""

    file: Path
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else f"{self.file}"
        return f"{where}: {self.reason}"


class MappingError(Exception):
    """The mappings cannot be used; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(str(problem) for problem in problems)
        super().__init__(f"{len(problems)} problem(s) in the mappings:\n{lines}")


# -- reading YAML with locations ----------------------------------------------------------


@dataclass
class _Document:
    """A parsed file: its data and the line where each value (or mapping entry) starts."""

    file: Path
    data: Any
    locs: dict[Path_, Location] = field(default_factory=dict)

    def line_of(self, path: Path_) -> Location | None:
        for end in range(len(path), -1, -1):
            found = self.locs.get(path[:end])
            if found is not None:
                return found
        return None


class _Reader:
    """Turns a composed YAML node tree into Python values, recording each value's line."""

    def __init__(self, file: Path, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        self.locs: dict[Path_, Location] = {}
        self._constructor = SafeConstructor()
        self._active: set[int] = set()

    def _problem(self, node: Node, reason: str) -> None:
        self.problems.append(Problem(self.file, node.start_mark.line + 1, reason))

    def read(self, node: Node, path: Path_, depth: int = 0) -> Any:  # noqa: PLR0911 - one return per node kind
        if depth > _MAX_DEPTH:
            self._problem(node, "nesting is too deep")
            return None
        if id(node) in self._active:
            self._problem(node, "an alias refers to its own ancestor (recursive structure)")
            return None
        self.locs.setdefault(path, Location(self.file, node.start_mark.line + 1))
        if isinstance(node, ScalarNode):
            try:
                return self._constructor.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
                self._problem(node, f"bad value {node.value!r}: {exc}")
                return None
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [
                    self.read(item, (*path, index), depth + 1)
                    for index, item in enumerate(node.value)
                ]
            if isinstance(node, MappingNode):
                return self._read_mapping(node, path, depth)
        finally:
            self._active.discard(id(node))
        self._problem(node, "unsupported YAML node")  # pragma: no cover - three node kinds
        return None

    def _read_mapping(self, node: MappingNode, path: Path_, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self._problem(key_node, "a key must be plain text")
                continue
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._problem(key_node, "merge keys (<<) are not supported; write the keys out")
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            child = (*path, key)
            if key in result:
                self._duplicate(
                    path,
                    key,
                    first=first_line[key],
                    line=line,
                    earlier=result[key],
                    node=value_node,
                )
                continue
            self.locs[child] = Location(self.file, line)
            first_line[key] = line
            result[key] = self.read(value_node, child, depth + 1)
        return result

    def _duplicate(
        self, path: Path_, key: str, *, first: int, line: int, earlier: Any, node: Node
    ) -> None:
        if len(path) == 2 and path[0] == "source_of_truth":
            later = node.value if isinstance(node, ScalarNode) else "another rule"
            before = earlier if isinstance(earlier, str) else (earlier or {}).get("system")
            reason = (
                f"two sources of truth for {path[1]}.{key}: {before} (line {first}) "
                f"and {later} (line {line}); keep one"
            )
        else:
            reason = f"duplicate key {key!r} (first at line {first}); YAML would keep only one"
        self.problems.append(Problem(self.file, line, reason))


def _read_document(file: Path, problems: list[Problem]) -> _Document | None:
    """Parse one YAML file; syntax errors become problems and return None."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        problems.append(Problem(file, None, f"cannot read: {exc.strerror or exc}"))
        return None
    if len(raw) > _MAX_FILE_BYTES:
        problems.append(Problem(file, None, f"file larger than {_MAX_FILE_BYTES} bytes"))
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(file, None, f"not UTF-8 text: {exc.reason}"))
        return None
    return parse_document(file, text, problems)


def parse_document(  # noqa: PLR0911 - one return per kind of unusable input
    file: Path, text: str, problems: list[Problem]
) -> _Document | None:
    """Parse YAML ``text`` as ``file``; problems are appended, None when unusable."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        problems.append(
            Problem(file, mark.line + 1 if mark else None, f"YAML syntax error: {reason}")
        )
        return None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        problems.append(Problem(file, line, f"YAML error: {exc.reason}"))
        return None
    except yaml.YAMLError as exc:
        problems.append(Problem(file, None, f"YAML error: {exc}"))
        return None
    except RecursionError:
        problems.append(Problem(file, None, "YAML nesting is too deep"))
        return None
    if node is None:
        return _Document(file, {}, {(): Location(file, 1)})
    reader = _Reader(file, problems)
    try:
        data = reader.read(node, ())
    except RecursionError:
        problems.append(Problem(file, None, "YAML nesting is too deep"))
        return None
    if not isinstance(data, dict):
        problems.append(
            Problem(file, node.start_mark.line + 1, "a mapping file must be a mapping of keys")
        )
        return None
    # Duplicate keys and bad scalars are already reported; the rest is still checked.
    return _Document(file, data, reader.locs)


# -- merging defaults and overrides -------------------------------------------------------


def _subtree(locs: Mapping[Path_, Location], prefix: Path_) -> dict[Path_, Location]:
    size = len(prefix)
    return {path: loc for path, loc in locs.items() if path[:size] == prefix}


def _merge(base: _Document, override: _Document) -> _Document:
    """Deep-merge ``override`` onto ``base`` (see the module docstring for the rules)."""
    locs: dict[Path_, Location] = {}

    def merge(old: Any, new: Any, path: Path_) -> Any:
        field_mapping = len(path) >= 2 and path[-2] == "fields"
        if isinstance(old, dict) and isinstance(new, dict) and not field_mapping:
            merged: dict[str, Any] = {}
            for key, value in old.items():
                if key not in new:
                    merged[key] = value
                    locs.update(_subtree(base.locs, (*path, key)))
                elif new[key] is not None:
                    merged[key] = merge(value, new[key], (*path, key))
            for key, value in new.items():
                if key not in old and value is not None:
                    merged[key] = value
                    locs.update(_subtree(override.locs, (*path, key)))
            where = override.locs.get(path) or base.locs.get(path)
            if where is not None:
                locs[path] = where
            return merged
        locs.update(_subtree(override.locs, path))
        return new

    data = merge(base.data, override.data, ())
    return _Document(override.file, data, locs)


# -- validation ---------------------------------------------------------------------------


def _walk(data: Any, loc: tuple[Any, ...]) -> Path_:
    """The longest prefix of a pydantic error location that exists in ``data``."""
    path: list[str | int] = []
    current = data
    for part in loc:
        in_dict = isinstance(current, dict) and isinstance(part, str) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            current = current[part]
            path.append(part)
        elif isinstance(current, dict) and part == "from_" and "from" in current:
            current = current["from"]
            path.append("from")
        elif isinstance(current, dict | list):
            # a name pydantic adds (a union member, a model's tag): skip it
            continue
        else:
            break
    return tuple(path)


def _reason(error: Any) -> str:
    kind = error["type"]
    name = error["loc"][-1] if error["loc"] else ""
    if kind == "extra_forbidden":
        return f"unknown key {name!r}"
    if kind == "missing":
        return f"missing required key {name!r}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


class _Checker:
    """Collects problems while validating documents and checking them against each other."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.partial: set[str] = set()  # systems with invalid parts left out of the checks

    def at(self, document: _Document, path: Path_, reason: str) -> None:
        where = document.line_of(path)
        file = where.file if where else document.file
        self.problems.append(Problem(file, where.line if where else None, reason))

    def validate(
        self, document: _Document, model: type[_M], data: Any = None, path: Path_ = ()
    ) -> _M | None:
        """Validate ``data`` (default: the whole document), found at ``path``, as ``model``."""
        if data is None and not path:
            data = document.data
        skip: set[Path_] = set()
        self._transform_problems(document, data, path, skip)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                where = (*path, *_walk(data, tuple(error["loc"])))
                if any(where[: len(s)] == s for s in skip):
                    continue  # already reported precisely by _transform_problems
                self.at(document, where, _reason(error))
            return None

    def _transform_problems(
        self, document: _Document, data: Any, prefix: Path_, skip: set[Path_]
    ) -> None:
        """Report every bad transform with the line of the entry (or parameter) at fault."""
        for path, entries in _transform_lists(data, prefix):
            for index, raw in enumerate(entries):
                try:
                    parse_transform(raw)
                except TransformSpecError as exc:
                    for inner, reason in exc.problems:
                        self.at(document, (*path, index, *inner), reason)
                    skip.add(path)

    def validate_system(self, document: _Document) -> SystemFile | None:
        """Validate a system file object by object and field by field.

        Every invalid part is reported; the valid parts are returned so that the checks
        between fields and files still run on them (and report their own problems).
        """
        data = document.data
        objects_raw = data.get("objects")
        head = self.validate(document, SystemFile, {**data, "objects": {}}, ())
        if head is None:
            return None
        if objects_raw is None:
            return head
        if not isinstance(objects_raw, dict):
            self.at(document, ("objects",), "objects must map object names to mappings")
            return head
        objects: dict[str, ObjectMapping] = {}
        for name, raw in objects_raw.items():
            path: Path_ = ("objects", name)
            fields_raw = raw.get("fields") if isinstance(raw, dict) else None
            if not isinstance(fields_raw, dict):
                mapping = self.validate(document, ObjectMapping, raw, path)
                if mapping is not None:  # pragma: no cover - fields is required
                    objects[name] = mapping
                continue
            mapping = self.validate(document, ObjectMapping, {**raw, "fields": {}}, path)
            fields: dict[str, FieldSpec] = {}
            for key, spec_raw in fields_raw.items():
                spec = self.validate(document, FieldSpec, spec_raw, (*path, "fields", key))
                if spec is not None:
                    fields[key] = spec
            if mapping is not None:
                objects[name] = mapping.model_copy(update={"fields": fields})
            if mapping is None or len(fields) < len(fields_raw):
                self.partial.add(head.system)
        return head.model_copy(update={"objects": objects})


def _transform_lists(data: Any, path: Path_) -> Iterator[tuple[Path_, list[Any]]]:
    """Every ``transforms`` list in a system file's objects, with its path."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "transforms" and isinstance(value, list):
                yield (*path, key), value
            else:
                yield from _transform_lists(value, (*path, key))


@dataclass(frozen=True)
class MappingSet:
    """Validated, merged mappings: what normalisation, planning and posting read.

    Attributes:
        systems: system name -> its mapping file.
        shared: the source of truth per field.
        products: products and prices -> QuickBooks items.
        accounts: ledger accounts by role.
        documents: the merged content of each file, by file name (for display).
        origins: the files that built each document, defaults first.
    """

    systems: Mapping[str, SystemFile]
    shared: SharedFile
    products: ProductsFile
    accounts: AccountsFile
    documents: Mapping[str, Any] = field(default_factory=dict)
    origins: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)

    def object_mapping(self, system: str, object_name: str) -> ObjectMapping | None:
        """Return the mapping of ``object_name`` of ``system``, or None when it has none."""
        mapping = self.systems.get(system)
        return None if mapping is None else mapping.objects.get(object_name)

    def source_of_truth(self, entity: str, field_name: str) -> TruthRule | None:
        """Return the source-of-truth rule of ``entity.field_name``, or None."""
        return self.shared.source_of_truth.get(entity, {}).get(field_name)

    def truth_order(self, entity: str) -> dict[str, tuple[str, ...]]:
        """Return, per field of ``entity`` with a source of truth, the systems in survivorship
        order: the source of truth first, then every other system that maps the field.

        This is what golden-record survivorship reads (e.g. ``{"name": ("salesforce",
        "quickbooks", "stripe")}``); among the others, the most recent value wins.
        """
        order: dict[str, tuple[str, ...]] = {}
        for field_name, rule in self.shared.source_of_truth.get(entity, {}).items():
            others = sorted(
                name
                for name, system in self.systems.items()
                if name != rule.system and _maps_field(system, entity, field_name)
            )
            order[field_name] = (rule.system, *others)
        return order

    def account(self, role: str) -> AccountSpec:
        """Return the ledger account of ``role`` (``fees``, ``clearing``, ...).

        Raises:
            KeyError: no account has this role.
        """
        return self.accounts.accounts[role]

    def item_for(
        self,
        *,
        stripe_price: str | None = None,
        stripe_lookup_key: str | None = None,
        stripe_product: str | None = None,
        salesforce_product_code: str | None = None,
        product_name: str | None = None,
    ) -> ItemSpec | None:
        """Return the QuickBooks item a product or price books to.

        The most specific match wins: price id, then lookup key, then product id, then
        Salesforce product code, then product name; then ``default_item``.

        Returns:
            The item, or None when nothing matches and there is no default item.
        """
        items = self.products.items.values()
        for value, attribute in (
            (stripe_price, "stripe_prices"),
            (stripe_lookup_key, "stripe_lookup_keys"),
            (stripe_product, "stripe_products"),
            (salesforce_product_code, "salesforce_product_codes"),
            (product_name, "product_names"),
        ):
            if value is None:
                continue
            for item in items:
                if value in getattr(item, attribute):
                    return item
        default = self.products.default_item
        return None if default is None else self.products.items.get(default)


def _documents(
    defaults_dir: Path, user_dir: Path | None, problems: list[Problem]
) -> tuple[dict[str, _Document], dict[str, tuple[Path, ...]]]:
    files: dict[str, list[Path]] = {}
    for folder in (defaults_dir, user_dir):
        if folder is None:
            continue
        if not folder.is_dir():
            problems.append(Problem(folder, None, "mappings folder does not exist"))
            continue
        for file in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
            files.setdefault(file.stem, []).append(file)
    documents: dict[str, _Document] = {}
    origins: dict[str, tuple[Path, ...]] = {}
    for name, paths in files.items():
        parsed = [_read_document(path, problems) for path in paths]
        origins[name] = tuple(paths)
        if any(document is None for document in parsed):
            continue
        merged: _Document | None = None
        for document in parsed:
            if document is None:  # pragma: no cover - filtered above
                continue
            if merged is None or document.data.get("replace") is True:
                merged = document
            else:
                merged = _merge(merged, document)
        if merged is not None:
            documents[name] = merged
    return documents, origins


def check_mappings(
    user_dir: Path | None = None, *, defaults_dir: Path | None = None
) -> list[Problem]:
    """Return every problem in the effective mappings (defaults plus ``user_dir``).

    Args:
        user_dir: the user's mappings folder, or None for the defaults alone.
        defaults_dir: the shipped defaults (default: :func:`default_mappings_dir`).

    Returns:
        The problems, in file order; empty when the mappings load.
    """
    try:
        load_mappings(user_dir, defaults_dir=defaults_dir)
    except MappingError as exc:
        return exc.problems
    return []


def load_mappings(user_dir: Path | None = None, *, defaults_dir: Path | None = None) -> MappingSet:
    """Load, merge and validate the mappings.

    Args:
        user_dir: the user's mappings folder (``mappings_dir`` in the configuration), whose
            files extend or replace the defaults of the same name; None for the defaults.
        defaults_dir: the shipped defaults (default: :func:`default_mappings_dir`).

    Returns:
        The validated mappings.

    Raises:
        MappingError: with every problem found, each with its file and line.
    """
    problems: list[Problem] = []
    documents, origins = _documents(defaults_dir or default_mappings_dir(), user_dir, problems)
    checker = _Checker()
    systems: dict[str, SystemFile] = {}
    system_docs: dict[str, _Document] = {}
    for name, document in documents.items():
        if name in FILE_KINDS:
            continue
        system = checker.validate_system(document)
        if system is None:
            continue
        if system.system != name:
            checker.at(
                document, ("system",), f"system {system.system!r} must match the file name {name!r}"
            )
            continue
        systems[name] = system
        system_docs[name] = document

    def special(name: str, model: type[_M]) -> tuple[_M | None, _Document | None]:
        document = documents.get(name)
        if document is None:
            if name in origins:  # the file exists but did not parse
                return None, None
            fallback = _Document(Path(f"{name}.yaml"), {}, {})
            return checker.validate(fallback, model), fallback
        return checker.validate(document, model), document

    shared, shared_doc = special("shared", SharedFile)
    products, products_doc = special("products", ProductsFile)
    accounts, _ = special("accounts", AccountsFile)

    for name, system in systems.items():
        _check_system(checker, system_docs[name], system, shared)
    if shared is not None and shared_doc is not None:
        present = {name for name in origins if name not in FILE_KINDS}
        _check_shared(
            checker,
            shared_doc,
            shared=shared,
            systems=systems,
            present=present,
            partial=checker.partial,
        )
    if products is not None and products_doc is not None:
        _check_products(checker, products_doc, products, accounts)

    problems.extend(checker.problems)
    problems.sort(key=lambda p: (str(p.file), p.line or 0))
    if problems or shared is None or products is None or accounts is None:
        raise MappingError(problems)
    return MappingSet(
        systems=systems,
        shared=shared,
        products=products,
        accounts=accounts,
        documents={name: document.data for name, document in documents.items()},
        origins=origins,
    )


# -- checks across fields and files -------------------------------------------------------


def _check_fields(
    checker: _Checker,
    *,
    document: _Document,
    system: SystemFile,
    model: type[BaseModel],
    fields: Mapping[str, FieldSpec],
    path: Path_,
) -> None:
    for target, spec in fields.items():
        where = (*path, target)
        reason, element = check_canonical_path(model, target, each=spec.each is not None)
        if reason is not None:
            checker.at(document, where, reason)
        elif element is not None and spec.fields is not None:
            _check_fields(
                checker,
                document=document,
                system=system,
                model=element,
                fields=spec.fields,
                path=(*where, "fields"),
            )
        for index, step in enumerate(spec.transforms):
            table = getattr(step.params, "table", None)
            if step.name == "lookup" and isinstance(table, str) and table not in system.tables:
                known = ", ".join(system.tables) or "none defined"
                checker.at(
                    document,
                    (*where, "transforms", index),
                    f"lookup table {table!r} is not in this file's tables ({known})",
                )


def _check_system(
    checker: _Checker, document: _Document, system: SystemFile, shared: SharedFile | None
) -> None:
    for object_name, mapping in system.objects.items():
        path: Path_ = ("objects", object_name)
        model = ENTITY_TYPES[mapping.entity]
        _check_fields(
            checker,
            document=document,
            system=system,
            model=model,
            fields=mapping.fields,
            path=(*path, "fields"),
        )
        for target, canonical in mapping.writes.items():
            where = (*path, "writes", target)
            if canonical.startswith("hub."):
                if canonical[4:] not in HUB_VALUES:
                    known = ", ".join(f"hub.{name}" for name in HUB_VALUES)
                    checker.at(document, where, f"unknown hub value {canonical!r} ({known})")
                continue
            reason, _ = check_canonical_path(model, canonical)
            if reason is not None:
                checker.at(document, where, f"write to {target}: {reason}")
                continue
            if shared is None:
                continue
            entity_field = f"{mapping.entity}.{top_field(canonical)}"
            rule = shared.source_of_truth.get(mapping.entity, {}).get(top_field(canonical))
            if rule is None:
                checker.at(
                    document,
                    where,
                    f"write to a field the hub does not own: {target} <- {entity_field}, and "
                    f"shared.yaml names no source of truth for {entity_field}",
                )
            elif rule.system == system.system:
                checker.at(
                    document,
                    where,
                    f"write to a field the hub does not own: {system.system} is the source of "
                    f"truth for {entity_field}, so the hub never writes it to {target}",
                )


def _maps_field(system: SystemFile, entity: str, field_name: str) -> bool:
    return any(
        top_field(target) == field_name
        for mapping in system.objects.values()
        if mapping.entity == entity
        for target in mapping.fields
    )


def _check_shared(
    checker: _Checker,
    document: _Document,
    *,
    shared: SharedFile,
    systems: Mapping[str, SystemFile],
    present: set[str],
    partial: set[str],
) -> None:
    for entity, rules in shared.source_of_truth.items():
        if entity not in ENTITY_TYPES:
            known = ", ".join(sorted(ENTITY_TYPES))
            checker.at(
                document, ("source_of_truth", entity), f"unknown entity {entity!r} ({known})"
            )
            continue
        model = ENTITY_TYPES[entity]
        for field_name, rule in rules.items():
            where = ("source_of_truth", entity, field_name)
            if field_name != top_field(field_name):
                checker.at(document, where, f"{field_name!r}: name a whole field, not a path")
                continue
            reason, _ = check_canonical_path(model, field_name)
            if reason is not None:
                checker.at(document, where, reason)
                continue
            system = systems.get(rule.system)
            if system is None:
                if rule.system not in present:  # a present but broken file is reported itself
                    known = ", ".join(sorted(systems)) or "none"
                    checker.at(document, where, f"unknown system {rule.system!r} (mapped: {known})")
                continue
            if system.system not in partial and not _maps_field(system, entity, field_name):
                checker.at(
                    document,
                    where,
                    f"{rule.system} is the source of truth for {entity}.{field_name} but "
                    f"{rule.system}.yaml maps no {entity} field to it",
                )


def _check_products(
    checker: _Checker,
    document: _Document,
    products: ProductsFile,
    accounts: AccountsFile | None,
) -> None:
    claimed: dict[tuple[str, str], str] = {}
    for key, item in products.items.items():
        where: Path_ = ("items", key)
        if accounts is not None and item.income_account not in accounts.accounts:
            checker.at(
                document,
                (*where, "income_account"),
                f"income account {item.income_account!r} is not a role in accounts.yaml",
            )
        for attribute in (
            "stripe_products",
            "stripe_prices",
            "stripe_lookup_keys",
            "salesforce_product_codes",
            "product_names",
        ):
            for index, value in enumerate(getattr(item, attribute)):
                other = claimed.setdefault((attribute, value), key)
                if other != key:
                    checker.at(
                        document,
                        (*where, attribute, index),
                        f"{attribute} {value!r} is claimed by items {other!r} and {key!r}",
                    )
    if products.default_item is not None and products.default_item not in products.items:
        checker.at(
            document,
            ("default_item",),
            f"default_item {products.default_item!r} is not a key of items",
        )
