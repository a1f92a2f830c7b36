"""Reading export files: encodings, shapes of payloads, value types and rejected rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerlink.csvimport import CsvSource, FileRefusedError, detect_encoding


def write(tmp_path: Path, content: str | bytes, name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


class Read:
    """A source read to its end: the source (problems, counts) and its records."""

    def __init__(self, source: CsvSource) -> None:
        self.source = source
        self.records = list(source.records())
        self.problems = source.problems
        self.rows = source.rows


def read(path: Path, system: str = "stripe", obj: str = "customers", **maps: str) -> Read:
    return Read(CsvSource(path, system, obj, maps))


def payloads(done: Read) -> dict[str, dict[str, object]]:
    return {r.id: dict(r.payload) for r in done.records}


def test_stripe_rows_nest_and_type_like_the_api(tmp_path: Path) -> None:
    """Stripe rows become nested customer payloads with unix timestamps, booleans and ints."""
    path = write(
        tmp_path,
        "id,Name,Email,Address Line1,Address Country,Created (UTC),Delinquent,Balance,"
        "sf_account_id (metadata)\n"
        "cus_1,Acme,a@acme.example,1 Main St,FR,2024-01-15 10:00:00,false,-1250,001A\n"
        "cus_2,Beta,,,,1705399200,true,0,\n",
    )
    source = read(path)
    got = payloads(source)
    assert got["cus_1"] == {
        "id": "cus_1",
        "object": "customer",
        "name": "Acme",
        "email": "a@acme.example",
        "address": {"line1": "1 Main St", "country": "FR"},
        "created": 1705312800,
        "delinquent": False,
        "balance": -1250,
        "metadata": {"sf_account_id": "001A"},
    }
    assert got["cus_2"]["address"] is None
    assert got["cus_2"]["email"] is None
    assert got["cus_2"]["metadata"] == {}
    assert got["cus_2"]["created"] == 1705399200
    assert source.records[0].object == "customers"
    assert source.records[0].cursor_value == "2024-01-15T10:00:00Z"


def test_quickbooks_rows_nest_and_keep_decimals_exact(tmp_path: Path) -> None:
    """QuickBooks rows nest BillAddr/PrimaryEmailAddr, omit empty cells, keep money as exact text."""
    path = write(
        tmp_path,
        "Id,Customer,Company name,PrimaryEmailAddr,BillAddr_City,Open balance,Phone\n"
        '58,Acme,Acme Inc,ap@acme.example,Paris,"1,250.10",\n',
    )
    got = payloads(read(path, "quickbooks", "Customer"))
    assert got["58"] == {
        "Id": "58",
        "DisplayName": "Acme",
        "CompanyName": "Acme Inc",
        "PrimaryEmailAddr": {"Address": "ap@acme.example"},
        "BillAddr": {"City": "Paris"},
        "Balance": "1250.10",
    }


def test_salesforce_rows_type_like_rest(tmp_path: Path) -> None:
    """Salesforce rows carry REST date-times, integers, and revenue as exact decimal text."""
    path = write(
        tmp_path,
        "Account ID,Account Name,Employees,Annual Revenue,Created Date,Website\n"
        "001A,Acme,120,0.10,2024-01-15T10:00:00Z,\n",
    )
    got = payloads(read(path, "salesforce", "Account"))
    assert got["001A"] == {
        "attributes": {"type": "Account"},
        "Id": "001A",
        "Name": "Acme",
        "NumberOfEmployees": 120,
        "AnnualRevenue": "0.10",
        "CreatedDate": "2024-01-15T10:00:00.000+0000",
        "Website": None,
    }


def test_utf8_with_bom_is_read(tmp_path: Path) -> None:
    """A UTF-8 file with a byte-order mark reads its first header and accents correctly."""
    path = write(tmp_path, b"\xef\xbb\xbfid,Name\ncus_1,Caf\xc3\xa9 Ren\xc3\xa9\n")
    assert detect_encoding(path) == "utf-8-sig"
    assert payloads(read(path))["cus_1"]["name"] == "Café René"


def test_windows_1252_is_read(tmp_path: Path) -> None:
    """A Windows-1252 file (Excel's default) is decoded as such, curly quotes included."""
    path = write(tmp_path, "id,Name\ncus_1,Café “René”\n".encode("cp1252"))
    assert detect_encoding(path) == "cp1252"
    assert payloads(read(path))["cus_1"]["name"] == "Café “René”"


def test_utf16_is_refused(tmp_path: Path) -> None:
    """A UTF-16 file is refused on line 1 with advice to save it as UTF-8."""
    path = write(tmp_path, "id,Name\ncus_1,Acme\n".encode("utf-16"))
    with pytest.raises(FileRefusedError, match="line 1: the file is UTF-16"):
        detect_encoding(path)


def test_undecodable_bytes_are_refused_with_their_line(tmp_path: Path) -> None:
    """A UTF-8 file with invalid bytes on line 3 is refused, naming line 3."""
    path = write(tmp_path, b"id,Name\ncus_1,Caf\xc3\xa9\ncus_2,Bad\xff\xfe\ncus_3,Ok\n")
    with pytest.raises(FileRefusedError) as refused:
        detect_encoding(path)
    assert refused.value.line == 3


def test_bytes_undefined_in_windows_1252_are_refused(tmp_path: Path) -> None:
    """Bytes neither UTF-8 nor Windows-1252 (0x81) are refused with their line."""
    path = write(tmp_path, b"id,Name\ncus_1,Ok\ncus_2,A\x81B\n")
    with pytest.raises(FileRefusedError) as refused:
        detect_encoding(path)
    assert refused.value.line == 3


def test_ragged_rows_are_reported_and_the_rest_read(tmp_path: Path) -> None:
    """A row with the wrong number of columns is reported with its line; other rows are read."""
    path = write(tmp_path, "id,Name,Email\ncus_1,A,a@x\ncus_2,B\ncus_3,C,c@x,extra\ncus_4,D,\n")
    source = read(path)
    assert sorted(payloads(source)) == ["cus_1", "cus_4"]
    assert [(p.line, p.message) for p in source.problems] == [
        (3, "expected 3 columns, found 2; row skipped"),
        (4, "expected 3 columns, found 4; row skipped"),
    ]
    assert source.rows == 4


def test_line_numbers_count_quoted_newlines(tmp_path: Path) -> None:
    """Lines in problems are file lines, counting newlines inside quoted cells."""
    path = write(tmp_path, 'id,Name\ncus_1,"two\nlines"\ncus_2\n')
    source = read(path)
    assert [p.line for p in source.problems] == [4]


def test_duplicate_ids_are_reported_with_both_lines(tmp_path: Path) -> None:
    """A repeated id is reported with its line and the first one's; the first row is kept."""
    path = write(tmp_path, "id,Name\ncus_1,First\ncus_2,Other\ncus_1,Second\n")
    source = read(path)
    assert payloads(source)["cus_1"]["name"] == "First"
    assert [str(p) for p in source.problems] == [
        "line 4: duplicate id cus_1 (first on line 2); row skipped"
    ]


def test_bad_cell_values_reject_the_row(tmp_path: Path) -> None:
    """A cell that is not a valid value for its field rejects its row, naming the column."""
    path = write(tmp_path, "id,Balance,Delinquent\ncus_1,12.50,false\ncus_2,5,maybe\ncus_3,7,no\n")
    source = read(path)
    assert list(payloads(source)) == ["cus_3"]
    assert [p.line for p in source.problems] == [2, 3]
    assert "'Balance'" in source.problems[0].message


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\n\n"])
def test_empty_file_is_refused(tmp_path: Path, content: bytes) -> None:
    """An empty file (or only a byte-order mark or blank lines) is refused."""
    path = write(tmp_path, content)
    with pytest.raises(FileRefusedError, match="empty"):
        list(CsvSource(path, "stripe", "customers").records())


def test_missing_id_column_is_refused_with_a_hint(tmp_path: Path) -> None:
    """A file without an id column is refused, naming its columns and the --map fix."""
    path = write(tmp_path, "Name,Email\nAcme,a@x\n")
    with pytest.raises(FileRefusedError, match=r"no id column.*Name, Email.*--map COLUMN=id"):
        list(CsvSource(path, "stripe", "customers").records())


def test_map_names_the_id_column(tmp_path: Path) -> None:
    """`--map` can name the id column of a file that lacks a recognised one."""
    path = write(tmp_path, "Ref,Name\n7,Acme\n")
    source = read(path, "quickbooks", "Customer", Ref="Id")
    assert payloads(source) == {"7": {"Id": "7", "DisplayName": "Acme"}}
