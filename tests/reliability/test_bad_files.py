"""Fuzzed mapping and configuration files: located problems and exit status 2, never a crash.

Hypothesis feeds raw bytes, and byte-level mutations of the shipped files (which reach far
deeper into the parsers than random bytes do), to the mapping loader and the configuration
loader. The only acceptable outcomes are a clean load or the loader's own error with reasons.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerlink import log
from ledgerlink.cli.app import main
from ledgerlink.config import ConfigError, load_config
from ledgerlink.mapping import MappingError, check_mappings, default_mappings_dir, load_mappings

MAPPING_FILES = sorted(p.name for p in default_mappings_dir().glob("*.yaml"))
SHIPPED = {name: (default_mappings_dir() / name).read_bytes() for name in MAPPING_FILES}
GOOD_CONFIG = b"""\
mappings_dir = "mappings"

[database]
url = "sqlite:///ledgerlink.db"

[logging]
level = "INFO"
format = "json"

[sync]
interval_seconds = 300
page_size = 500

[connectors.stripe]
api_key = "env:LEDGERLINK_TEST_CANARY_STRIPE_API_KEY"
webhook_secrets = ["env:LEDGERLINK_TEST_CANARY_STRIPE_WEBHOOK_SECRET"]
"""
NASTY_BYTES = [
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\n" * 3,
    b"[[[[[[[[[[[[[[[[[[[[",
    b"{{{{{{{{{{{{",
    b"&a [*a, *a]",
    b"!!python/object:os.system ['true']",
    b"!!binary |\n  R0lGODlhDAAMAIQAAP",
    b"\t",
    b'= """',
    b"'''",
    b"1979-05-27T07:32:00Z",
    b"inf",
    b"9" * 400,
]


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few bytes replaced, inserted or deleted."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "replace", "delete", "truncate"]))
        chunk = draw(st.sampled_from(NASTY_BYTES) | st.binary(min_size=1, max_size=8))
        if action == "insert":
            data[at:at] = chunk
        elif action == "replace":
            data[at : at + len(chunk)] = chunk
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        else:
            del data[at:]
    return bytes(data)


def _file_bytes(name: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        st.lists(st.sampled_from(NASTY_BYTES), max_size=6).map(b"".join),
        mutated(SHIPPED[name]),
    )


def _check_mapping_bytes(name: str, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        user = Path(folder)
        (user / name).write_bytes(content)
        problems = check_mappings(user)
        for problem in problems:
            assert problem.reason.strip()
            assert problem.file.name == name or problem.file.parent == default_mappings_dir()
        if problems:
            with pytest.raises(MappingError) as raised:
                load_mappings(user)
            assert raised.value.problems
        else:
            load_mappings(user)


@settings(
    max_examples=int(os.environ.get("LEDGERLINK_FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_mapping_file_bytes_load_or_give_located_problems(data: st.DataObject) -> None:
    """Any bytes in a user's mapping file either load or raise MappingError listing reasons; nothing else escapes."""
    name = data.draw(st.sampled_from(MAPPING_FILES), label="file")
    _check_mapping_bytes(name, data.draw(_file_bytes(name), label="content"))


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe\x00s\x00t",
        b"objects:\n  customers: \xc3\x28\n",
        b"a: &a [*a, *a, *a, *a]\n" * 3,
        b"objects: !!python/object/apply:os.system ['true']\n",
        b"[" * 5000,
        b"- " * 5000,
        b"objects:\n  " + b"x" * 2_100_000 + b": 1\n",
    ],
    ids=["utf16", "bad-utf8", "alias-bomb", "python-tag", "deep-flow", "deep-block", "oversize"],
)
def test_known_parser_traps_give_problems(content: bytes) -> None:
    """Encodings, alias bombs, python tags, deep nesting and oversize files are problems, not crashes."""
    with tempfile.TemporaryDirectory() as folder:
        user = Path(folder)
        (user / "stripe.yaml").write_bytes(content)
        problems = check_mappings(user)
        assert problems
        with pytest.raises(MappingError):
            load_mappings(user)


def _load_config_bytes(content: bytes) -> None:
    with log._secrets_lock:
        before = set(log._secrets)
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "ledgerlink.toml"
            path.write_bytes(content)
            error: ConfigError | None = None
            try:
                load_config(path, required=True)
            except ConfigError as exc:
                error = exc
            if error is not None:
                assert str(error).startswith((str(path), "environment"))
                assert error.reason.strip()
                with log._secrets_lock:
                    given_here = [s for s in log._secrets - before if len(s) >= 8]
                shown = f"{error} {error!r}"
                assert not [s for s in given_here if s in shown], (
                    "a secret of the file in its error"
                )
    finally:
        # A secret this example's file held (a mutation can turn ``env:NAME`` into a literal,
        # part of the variable's name) is checked above against its own error; left registered,
        # the run's secret scan would find it in a later example's error naming that variable.
        with log._secrets_lock:
            log._secrets.intersection_update(before)


@settings(
    max_examples=int(os.environ.get("LEDGERLINK_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    content=st.one_of(
        st.binary(max_size=300),
        st.lists(st.sampled_from(NASTY_BYTES), max_size=6).map(b"".join),
        mutated(GOOD_CONFIG),
    )
)
def test_config_bytes_load_or_raise_config_error(content: bytes) -> None:
    """Any bytes as ledgerlink.toml either load or raise ConfigError naming the file; nothing else escapes."""
    _load_config_bytes(content)


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe[\x00d\x00b\x00]",
        b"[database]\nurl = 'mysql://x'\n",
        b"[sync]\ninterval_seconds = 1e400\n",
        b"[sync]\npage_size = 99999999999999999999999\n",
        b"[connectors.stripe]\napi_key = 'env:LEDGERLINK_NOT_SET_ANYWHERE'\n",
        b"[connectors.stripe]\napi_key = 'file:/nonexistent/\x00secret'\n",
        b"[[database]]\nurl = 1\n",
        b"a = [" * 2000,
        b"\r",
        b"[sync]\rinterval_seconds = 5\r",
    ],
    ids=[
        "utf16",
        "scheme",
        "huge-float",
        "huge-int",
        "env-missing",
        "nul-in-path",
        "aot",
        "deep",
        "lone-cr",
        "cr-lines",
    ],
)
def test_bad_config_exits_2_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
) -> None:
    """A bad configuration stops the CLI with exit status 2 and a message naming the file, not a traceback."""
    path = tmp_path / "ledgerlink.toml"
    path.write_bytes(content)
    monkeypatch.setenv("COLUMNS", "400")  # a long temporary path stays on one line
    monkeypatch.setattr(sys, "argv", ["ledgerlink", "--config", str(path), "outbox", "list"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "configuration error" in err
    assert str(path.name) in err
    assert "Traceback" not in err


def test_a_literal_secret_of_one_file_is_not_taken_for_a_leak_in_the_next_files_error() -> None:
    """A mutation can turn ``env:LEDGERLINK_TEST_CANARY_STRIPE_API_KEY`` into the literal key
    ``ARY_STRIPE_API_KEY``, which the loader registers as a secret; the next file's error that
    names a variable ending so must not count as that secret leaking (the run's secret scan
    fails on it otherwise), while the literal's own file is still checked."""
    literal = GOOD_CONFIG.replace(b"env:LEDGERLINK_TEST_CAN", b"")
    _load_config_bytes(literal)
    assert "ARY_STRIPE_API_KEY" not in log._secrets
    missing = GOOD_CONFIG.replace(b"STRIPE_API_KEY", b"STRIPE_API_KEY_NOT_SET")
    with pytest.raises(ConfigError, match="ARY_STRIPE_API_KEY_NOT_SET"):
        _load_config_from(missing)
    _load_config_bytes(missing)


def _load_config_from(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ledgerlink.toml"
        path.write_bytes(content)
        load_config(path, required=True)
