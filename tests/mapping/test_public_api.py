"""The public surface of ledgerlink.mapping, pinned so that a change to it is deliberate."""

from __future__ import annotations

import ledgerlink.mapping as mapping

EXPECTED = {
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
}


def test_public_names_are_pinned_and_importable() -> None:
    """ledgerlink.mapping exports exactly the pinned names, and each one exists."""
    assert set(mapping.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(mapping, name) is not None
