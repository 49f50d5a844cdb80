"""Reading one contract file into a typed DataFrame, or every reason it cannot be.

Checks run in the order a careful reader would: bytes (UTF-8, NUL and other binary bytes), the
header (name length, column limit, duplicates, required columns), the CSV shape (row width, at
least one row, row limit, field length), then every cell of every contract column against its
type. All checks are vectorised with pyarrow compute over columns read as strings; only the
failure path looks at single values, to report the first offending rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from fwa_pipeline.ingest.contract import MAX_FIELD_BYTES, Column, FileSpec, Kind, Role
from fwa_pipeline.ingest.problems import MAX_ROWS_SHOWN, BatchRejected, Problem
from fwa_pipeline.npi import valid_npi_mask
from fwa_pipeline.settings import Settings

BOM = codecs.BOM_UTF8
# Bytes no text CSV contains: C0 controls other than tab, LF and CR, and DEL.
_BINARY_BYTES = bytes([*range(0, 9), 11, 12, *range(14, 32), 127])
_BINARY_RE = re.compile(b"[" + re.escape(_BINARY_BYTES) + b"]")
# CSV/formula injection: spreadsheets evaluate cells starting with these (after spaces).
_FORMULA_RE = r"^(?:[\t\r]|\s*[=+\-@])"
_ARROW_BLOCK = 8 << 20
# Arrow's block size is an int32.
_MAX_ARROW_BLOCK = (1 << 31) - 1
_OVERSIZE = f"longer than {MAX_FIELD_BYTES:,} bytes, the limit for any field"
# Values and names quoted in messages are cut to this many characters.
_QUOTED_CHARS = 40

_ARROW_TYPES: dict[Kind, pa.DataType] = {
    Kind.DATE: pa.date32(),
    Kind.MONEY: pa.float64(),
    Kind.DECIMAL: pa.float64(),
    Kind.INTEGER: pa.int64(),
    Kind.BOOLEAN: pa.bool_(),
}

# NDC 10-digit forms, rewritten to 11-digit 5-4-2 by left-padding the short segment with 0
# (RE2 replacement syntax: \1 is a group, a following 0 is a literal).
_NDC_FORMS = (
    (r"^(\d{4})-(\d{4})-(\d{2})$", r"0\1\2\3"),
    (r"^(\d{5})-(\d{3})-(\d{2})$", r"\10\2\3"),
    (r"^(\d{5})-(\d{4})-(\d)$", r"\1\20\3"),
    # Already 5-4-2, only dashed.
    (r"^(\d{5})-(\d{4})-(\d{2})$", r"\1\2\3"),
)
_FIXED_DIGITS = re.compile(r"\[0-9\]\{(\d+)\}")
_NDC_EXPECTED = "11 digits, or 10 digits with dashes in 4-4-2, 5-3-2 or 5-4-1 form"


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_rows: int
    max_columns: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_upload_bytes, settings.max_upload_rows, settings.max_upload_columns)


@dataclass
class ParsedFile:
    """A file that passed every check: its rows typed as the contract says, contract columns
    only (absent optional columns filled with their default), in contract order."""

    spec: FileSpec
    frame: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def parse_file(spec: FileSpec, data: bytes, limits: Limits) -> ParsedFile:
    """Validate and convert one file. Raises :class:`BatchRejected` listing every problem."""
    if data.startswith(BOM):  # spreadsheet exports prepend one; it is not part of the header
        data = data[len(BOM) :]
    problems = _check_bytes(spec, data)
    if problems:
        raise BatchRejected(problems)
    header = _read_header(data)
    if header is None:
        raise BatchRejected([Problem(spec.name, f"a column name is {_OVERSIZE}", line=1)])
    warnings: list[str] = []
    problems = _check_header(spec, header, limits, warnings)
    if problems:
        raise BatchRejected(problems)
    table = _read_table(spec, data, header)
    if not table.num_rows:
        raise BatchRejected([Problem(spec.name, "the file has a header but no data rows")])
    if table.num_rows > limits.max_rows:
        raise BatchRejected(
            [
                Problem(
                    spec.name,
                    f"the file has {table.num_rows:,} data rows; the limit is {limits.max_rows:,}",
                    rows=(limits.max_rows + 1,),
                )
            ]
        )
    problems = _check_field_lengths(spec, table)
    if problems:
        raise BatchRejected(problems)
    checker = _Checker(spec, table)
    frame = checker.convert()
    if checker.problems:
        raise BatchRejected(checker.problems)
    if spec.role is Role.REFERENCE:
        frame = _keep_last_per_key(spec, frame, warnings)
    return ParsedFile(spec, frame, warnings)


# --------------------------------------------------------------------------- bytes and header


def _check_bytes(spec: FileSpec, data: bytes) -> list[Problem]:
    if not data or data.isspace():
        return [Problem(spec.name, "the file is empty: a header row is required", line=1)]
    # Binary first: an archive or image is better reported as binary than as bad UTF-8.
    # translate() deletes the binary bytes at C speed; only a file that has some is searched.
    if len(data.translate(None, _BINARY_BYTES)) != len(data):
        match = _BINARY_RE.search(data)
        assert match is not None
        byte = match.group()[0]
        what = "a NUL byte" if byte == 0 else f"binary content (control byte 0x{byte:02x})"
        line, column = _locate(data, match.start())
        return [Problem(spec.name, f"{what}: not a text CSV file", column=column, line=line)]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _locate(data, exc.start)
        return [Problem(spec.name, "not valid UTF-8 text", column=column, line=line)]
    return []


def _locate(data: bytes, offset: int) -> tuple[int, str | None]:
    """The physical line and the column (header name, or position; None when the line up to
    it does not read as CSV: a field too long, a bare carriage return) of byte ``offset``."""
    line = data.count(b"\n", 0, offset) + 1
    start = data.rfind(b"\n", 0, offset) + 1
    prefix = data[start:offset].decode("utf-8", errors="replace")
    try:
        position = len(next(csv.reader([prefix]), [""]))
    except csv.Error:
        return line, None
    header = _read_header(data.split(b"\n", 1)[0]) or []
    if line > 1 and position <= len(header) and header[position - 1]:
        return line, header[position - 1]
    return line, f"#{position}"


def _read_header(data: bytes) -> list[str] | None:
    """Header names, trimmed and lower-cased (the contract matches them case-insensitively);
    None when a name is over the csv module's field limit, and so over ``MAX_FIELD_BYTES``."""
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace", newline="")
    try:
        return [name.strip().lower() for name in next(csv.reader(text), [])]
    except csv.Error:  # the only one it raises once NUL bytes are refused: a field too large
        return None


def _quoted(value: str) -> str:
    return repr(value if len(value) <= _QUOTED_CHARS else value[:_QUOTED_CHARS] + "...")


def _check_header(
    spec: FileSpec, header: list[str], limits: Limits, warnings: list[str]
) -> list[Problem]:
    def at_header(column: str, message: str) -> Problem:
        return Problem(spec.name, message, column=column, line=1)

    oversize = [i for i, name in enumerate(header) if len(name.encode()) > MAX_FIELD_BYTES]
    if oversize:
        return [at_header(f"#{i + 1}", f"the column name is {_OVERSIZE}") for i in oversize]
    if len(header) > limits.max_columns:
        return [
            at_header(
                header[limits.max_columns] or f"#{limits.max_columns + 1}",
                f"the header has {len(header)} columns; the limit is {limits.max_columns}",
            )
        ]
    # The rows are read from the header's second line: a header spanning two would shift them.
    broken = [i for i, name in enumerate(header) if "\n" in name or "\r" in name]
    if broken:
        return [at_header(f"#{i + 1}", "a column name holds a line break") for i in broken]
    problems = [
        at_header(name, f"the column appears {header.count(name)} times in the header")
        for name in dict.fromkeys(header)
        if name and header.count(name) > 1
    ]
    problems += [
        at_header(column.name, "required column is missing")
        for column in spec.columns
        if column.required and column.name not in header
    ]
    unknown = [
        name or f"#{i + 1}" for i, name in enumerate(header) if name not in spec.column_names
    ]
    if unknown:
        warnings.append(
            f"{spec.name}: column{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(_quoted(n) for n in unknown)} not in the data contract; not stored"
        )
    return problems


def _read_table(spec: FileSpec, data: bytes, header: list[str]) -> pa.Table:
    """All columns as strings (empty cells null). Rows of the wrong width reject the file."""
    if not data.endswith(b"\n"):
        # Arrow cannot skip a header that has no line end (a header-only file, typically).
        data += b"\n"
    # Placeholder names: the header may hold empty or unknown names.
    names = [f"c{i}" for i in range(len(header))]
    bad_rows: list[int | None] = []

    def record(row: pa_csv.InvalidRow) -> str:
        bad_rows.append(row.number)
        return "skip"

    def read(block_size: int, use_threads: bool) -> pa.Table:
        bad_rows.clear()
        return pa_csv.read_csv(
            io.BytesIO(data),
            read_options=pa_csv.ReadOptions(
                column_names=names, skip_rows=1, use_threads=use_threads, block_size=block_size
            ),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=record),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=True,
                null_values=[""],
            ),
        )

    block_size = _ARROW_BLOCK
    try:
        try:
            table = read(block_size, True)
        except pa.ArrowInvalid:
            # A row longer than a block (an oversize cell, or a quote left open): read again as
            # one block, so that the checks after this name its row and column (failure only).
            block_size = min(len(data) + 1, _MAX_ARROW_BLOCK)
            table = read(block_size, True)
        if bad_rows:
            # Threaded parsing does not number rows; a second, serial pass does (failure only).
            read(block_size, False)
    except pa.ArrowInvalid:
        # Arrow's message quotes the row's content, which may be PHI: not passed on.
        raise BatchRejected(
            [Problem(spec.name, "not valid CSV (an unterminated quoted field?)")]
        ) from None
    if bad_rows:
        # InvalidRow.number counts the header as row 1.
        rows = [n - 1 for n in bad_rows if n is not None]
        raise BatchRejected(
            [
                Problem(
                    spec.name,
                    f"the row does not have the header's {len(header)} fields",
                    rows=tuple(rows[:MAX_ROWS_SHOWN]),
                    more_rows=max(0, len(rows) - MAX_ROWS_SHOWN),
                )
            ]
        )
    return table.rename_columns(header)


def _check_field_lengths(spec: FileSpec, table: pa.Table) -> list[Problem]:
    """Cells over ``MAX_FIELD_BYTES`` in any column, unknown ones included."""
    problems: list[Problem] = []
    for i, (name, values) in enumerate(zip(table.column_names, table.columns, strict=True)):
        lengths = pc.binary_length(values)
        if (pc.max(lengths).as_py() or 0) > MAX_FIELD_BYTES:
            rows, more = _rows_where(pc.greater(lengths, MAX_FIELD_BYTES))
            problems.append(
                Problem(spec.name, _OVERSIZE, column=name or f"#{i + 1}", rows=rows, more_rows=more)
            )
    return problems


def _rows_where(bad: pa.ChunkedArray) -> tuple[tuple[int, ...], int]:
    """The first data rows (1-based) where ``bad`` is true, and how many more there are."""
    bad = pc.fill_null(bad, False)
    count = pc.sum(bad).as_py() or 0
    if not count:
        return (), 0
    positions = np.flatnonzero(bad.to_numpy())[:MAX_ROWS_SHOWN]
    return tuple(int(p) + 1 for p in positions), count - len(positions)


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class _NumberFormat:
    valid: str
    # Recognisable mistakes, tried in order, each with its own message.
    mistakes: tuple[tuple[str, str], ...]
    otherwise: str


_NUMBERS = {
    Kind.MONEY: _NumberFormat(
        r"-?[0-9]{1,12}(?:\.[0-9]{1,2})?",
        (
            (r"-?[0-9]+\.[0-9]{3,}", "money has more than 2 decimal places"),
            (r"-?[0-9]{13,}(?:\.[0-9]*)?", "too large (at most 12 digits before the point)"),
        ),
        "not a number (money is digits with at most 2 decimal places, no currency sign)",
    ),
    Kind.DECIMAL: _NumberFormat(
        r"-?(?:[0-9]{1,15}(?:\.[0-9]+)?|\.[0-9]+)",
        ((r"-?[0-9]{16,}(?:\.[0-9]*)?", "too large (at most 15 digits before the point)"),),
        "not a number",
    ),
    Kind.INTEGER: _NumberFormat(
        r"-?[0-9]{1,9}",
        ((r"-?[0-9]{10,}", "too large (at most 9 digits)"),),
        "not an integer",
    ),
}


def _mismatch(values: pa.ChunkedArray, pattern: str) -> pa.ChunkedArray:
    """True where a present value does not fully match ``pattern`` (null where absent)."""
    digits = _FIXED_DIGITS.fullmatch(pattern)
    if digits:  # NPIs, NDCs, places of service: two cheap kernels instead of a regex pass
        length = pc.equal(pc.binary_length(values), int(digits[1]))
        return pc.invert(pc.and_(pc.ascii_is_decimal(values), length))
    return pc.invert(pc.match_substring_regex(values, f"^(?:{pattern})$"))


def _mask(values: np.ndarray) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(values, pa.bool_())])


class _Checker:
    """Validates and converts every contract column of one file, collecting problems."""

    def __init__(self, spec: FileSpec, table: pa.Table) -> None:
        self.spec = spec
        self.table = table
        self.problems: list[Problem] = []

    def convert(self) -> pd.DataFrame:
        columns = {c.name: self._column(c) for c in self.spec.columns}
        if self.problems:
            return pd.DataFrame()
        # ArrowDtype columns: no copy here, none when the lander hands them back to Arrow.
        return pa.table(columns).to_pandas(types_mapper=pd.ArrowDtype)

    def flag(
        self,
        column: Column,
        bad: pa.ChunkedArray,
        message: str,
        raw: pa.ChunkedArray | None = None,
    ) -> bool:
        """Record a problem for the rows where ``bad`` is true; True when there were any.

        ``raw`` is the column as read, given when its first offending value may be quoted:
        values of member identifiers and of the members file (PHI) never are.
        """
        rows, more = _rows_where(bad)
        if not rows:
            return False
        if raw is not None and not (self.spec.phi or column.sensitive):
            message = f"{message}: {_quoted(raw[rows[0] - 1].as_py())}"
        self.problems.append(
            Problem(self.spec.name, message, column=column.name, rows=rows, more_rows=more)
        )
        return True

    def _column(self, column: Column) -> pa.ChunkedArray:
        target = _ARROW_TYPES.get(column.kind, pa.string())
        default = pa.scalar(column.default, target)
        if column.name not in self.table.column_names:
            return pa.chunked_array([pc.fill_null(pa.nulls(self.table.num_rows, target), default)])
        raw = self.table.column(column.name)
        if column.kind is Kind.TEXT:
            # On the cell as read: trimming would hide a leading tab or carriage return.
            self.flag(
                column,
                pc.match_substring_regex(raw, _FORMULA_RE),
                "starts with =, +, -, @, a tab or a carriage return (formula injection is "
                "rejected in text columns)",
            )
        values = pc.utf8_trim_whitespace(raw)
        values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
        if column.upper:
            values = pc.utf8_upper(values)
        # Claims keep rows with empty required cells (stored NULL) for the quality gate; a key
        # cell, or any required cell of a reference file, must be there.
        if column.name in self.spec.key or (column.required and self.spec.role is Role.REFERENCE):
            self.flag(column, pc.is_null(values), "required value is empty")
        converted = _CONVERTERS[column.kind](self, column, values, raw)
        if converted is None:
            return pa.chunked_array([], target)
        if self.spec.role is Role.REFERENCE:
            self._check_range(column, converted, raw)
        return pc.fill_null(converted, default)

    def _check_range(self, column: Column, values: pa.ChunkedArray, raw: pa.ChunkedArray) -> None:
        low, high = column.minimum, column.maximum
        if low is not None and high is not None:
            bad = pc.or_(pc.less(values, low), pc.greater(values, high))
            self.flag(column, bad, f"must be between {low:g} and {high:g}", raw)
        elif low is not None:
            self.flag(column, pc.less(values, low), f"must be at least {low:g}", raw)
        elif high is not None:
            self.flag(column, pc.greater(values, high), f"must be at most {high:g}", raw)


# Each converter validates the trimmed values of one kind and returns them converted, or None
# when a value is invalid (the problem is recorded on the checker).
Converter = Callable[[_Checker, Column, pa.ChunkedArray, pa.ChunkedArray], pa.ChunkedArray | None]


def _text(
    checker: _Checker, column: Column, values: pa.ChunkedArray, raw: pa.ChunkedArray
) -> pa.ChunkedArray | None:
    assert column.max_length is not None  # every text column is declared with one
    if checker.flag(
        column,
        pc.greater(pc.utf8_length(values), column.max_length),
        f"longer than {column.max_length} characters",
    ):
        return None
    return values


def _code(
    checker: _Checker, column: Column, values: pa.ChunkedArray, raw: pa.ChunkedArray
) -> pa.ChunkedArray | None:
    assert column.pattern is not None
    if checker.flag(column, _mismatch(values, column.pattern), f"expected {column.expected}", raw):
        return None
    return values


def _choice(
    checker: _Checker, column: Column, values: pa.ChunkedArray, raw: pa.ChunkedArray
) -> pa.ChunkedArray | None:
    outside = pc.invert(pc.is_in(values, value_set=pa.array(column.choices)))
    expected = column.expected or "one of " + ", ".join(column.choices)
    if checker.flag(column, pc.and_(pc.is_valid(values), outside), f"expected {expected}", raw):
        return None
    return values


def _boolean(
    checker: _Checker, column: Column, values: pa.ChunkedArray, raw: pa.ChunkedArray
) -> pa.ChunkedArray | None:
    lowered = pc.utf8_lower(values)
    if checker.flag(column, _mismatch(lowered, "true|false"), "expected true or false", raw):
        return None
    return pc.equal(lowered, "true")


def _npi(
    checker: _Checker, column: Column, values: pa.ChunkedArray, raw: pa.ChunkedArray
) -> pa.ChunkedArray | None:
    if checker.flag(column, _mismatch(values, "[0-9]{10}"), "expected an NPI: 10 digits", raw):
        return None
    # In claims a wrong check digit is a quality issue stored for the gate; reference data must
    # be clean, so a provider with one is rejected.
    if checker.spec.role is Role.REFERENCE:
        series = values.to_pandas()
        wrong = (series.notna() & ~valid_npi_mask(series)).to_numpy()
        if checker.flag(column, _mask(wrong), "the NPI check digit is wrong", raw):
            return None
    return values


def _ndc(
    checker: _Checker, column: Column, values: pa.ChunkedArray, raw: pa.ChunkedArray
) -> pa.ChunkedArray | None:
    if pc.any(pc.match_substring(values, "-")).as_py():
        for pattern, replacement in _NDC_FORMS:
            values = pc.replace_substring_regex(values, pattern, replacement)
    if checker.flag(
        column, _mismatch(values, "[0-9]{11}"), f"expected an NDC: {_NDC_EXPECTED}", raw
    ):
        return None
    return values


def _date(
    checker: _Checker, column: Column, values: pa.ChunkedArray, raw: pa.ChunkedArray
) -> pa.ChunkedArray | None:
    try:
        # Arrow's cast accepts exactly YYYY-MM-DD calendar dates, year 0 included, which no
        # database or Python date holds.
        dates = pc.cast(values, pa.date32())
    except pa.ArrowInvalid:
        pass
    else:
        year_zero = pc.less(pc.year(dates), 1)
        return None if checker.flag(column, year_zero, "not a calendar date", raw) else dates
    # Which values, and why (failure path only): the shape, else not a calendar day.
    shape = _mismatch(values, "[0-9]{4}-[0-9]{2}-[0-9]{2}")
    if not checker.flag(column, shape, "not an ISO date (YYYY-MM-DD)", raw):
        strings = values.to_pandas()
        parsed = pd.to_datetime(strings, format="%Y-%m-%d", errors="coerce")
        impossible = _mask((parsed.isna() & strings.notna()).to_numpy())
        checker.flag(column, impossible, "not a calendar date", raw)
    return None


def _number(
    checker: _Checker, column: Column, values: pa.ChunkedArray, raw: pa.ChunkedArray
) -> pa.ChunkedArray | None:
    number = _NUMBERS[column.kind]
    bad = pc.fill_null(_mismatch(values, number.valid), False)
    if not pc.any(bad).as_py():
        return pc.cast(values, _ARROW_TYPES[column.kind])
    for pattern, message in number.mistakes:
        this = pc.and_(bad, pc.match_substring_regex(values, f"^(?:{pattern})$"))
        checker.flag(column, this, message, raw)
        bad = pc.and_not(bad, pc.fill_null(this, False))
    checker.flag(column, bad, number.otherwise, raw)
    return None


_CONVERTERS: dict[Kind, Converter] = {
    Kind.TEXT: _text,
    Kind.CODE: _code,
    Kind.CHOICE: _choice,
    Kind.BOOLEAN: _boolean,
    Kind.NPI: _npi,
    Kind.NDC: _ndc,
    Kind.DATE: _date,
    Kind.MONEY: _number,
    Kind.DECIMAL: _number,
    Kind.INTEGER: _number,
}


def _keep_last_per_key(spec: FileSpec, frame: pd.DataFrame, warnings: list[str]) -> pd.DataFrame:
    """A key repeated within a file: the last row wins, as it would across batches."""
    repeated = frame.duplicated(subset=list(spec.key), keep="last")
    count = int(repeated.sum())
    if not count:
        return frame
    warnings.append(
        f"{spec.name}: {count:,} row{'s' if count > 1 else ''} repeat a {'/'.join(spec.key)} "
        "given later in the file; the last row of each key was kept"
    )
    return frame.loc[~repeated.to_numpy()].reset_index(drop=True)
