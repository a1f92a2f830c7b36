"""Declarative mappings: from a landed source record to a canonical entity.

The YAML files in ``mappings/`` (and the user's ``mappings_dir``) say how each object of each
system becomes a canonical entity, which system is the source of truth of each field, which
fields the hub may write, which QuickBooks item each product books to and which ledger accounts
postings use. :func:`load_mappings` reads and checks them (every problem with file and line);
:class:`Normalizer` maps one record; :func:`normalize_changed` maps what changed in a system and
quarantines what does not map. ``docs/mappings.md`` describes the file format.
"""

from __future__ import annotations

from ledgerlink.mapping.apply import (
    Normalizer,
    RecordMapper,
    RecordMappingError,
    UnmappedObjectError,
)
from ledgerlink.mapping.loader import (
    DEFAULT_MAPPINGS_DIR,
    MappingError,
    MappingSet,
    Problem,
    check_mappings,
    default_mappings_dir,
    load_mappings,
)
from ledgerlink.mapping.normalize import (
    NormalizedRecord,
    NormalizeReport,
    RetryOutcome,
    get_quarantine,
    iter_normalized,
    list_quarantine,
    normalize_changed,
    quarantine_record,
    retry_quarantined,
)
from ledgerlink.mapping.schema import HUB_VALUES, TruthRule
from ledgerlink.mapping.transforms import TRANSFORMS, TransformError

__all__ = [
    "DEFAULT_MAPPINGS_DIR",
    "HUB_VALUES",
    "TRANSFORMS",
    "MappingError",
    "MappingSet",
    "NormalizeReport",
    "NormalizedRecord",
    "Normalizer",
    "Problem",
    "RecordMapper",
    "RecordMappingError",
    "RetryOutcome",
    "TransformError",
    "TruthRule",
    "UnmappedObjectError",
    "check_mappings",
    "default_mappings_dir",
    "get_quarantine",
    "iter_normalized",
    "list_quarantine",
    "load_mappings",
    "normalize_changed",
    "quarantine_record",
    "retry_quarantined",
]
