"""The data quality gate: Pandera schemas over the store-shaped claim frames, the
quality report, and the gate that holds invalid claims back.

Every check is defined once, as a Pandera schema; :func:`assess_quality` runs the same schemas
the Dagster asset checks run and turns their failure cases into issue rows. The claims can also be
checked in shards (:func:`claim_issues` on each, then :func:`quality_result`): the checks that
compare claims across shards take what they need of the others (:class:`Elsewhere`: the claim
ids other shards hold, and each code's amount limit from exact figures that any split adds up to).
Issues come in two severities:

* ``error``: the claim breaks the data contract (a required value missing, a bad NPI check digit,
  a future date, an amount or count out of range, a claim id already used by an earlier row, a
  member or provider not in the reference data). The gate mode decides what happens to it.
* ``warning``: a duplicate service/fill key or an amount outlier. These are FWA signals the rule
  engine scores (RULE-MED-001 / RULE-RX-009 duplicates, RULE-MED-012 outliers), so they are
  reported but never hold a claim back.

Check errors read ``"<issue_type>: <what is wrong>"`` so failure cases map back to issue types;
details name the column and the kind of problem, never a value (member ids are PHI-adjacent).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc

from fwa_pipeline.domain.arrow import strings
from fwa_pipeline.domain.config import QualityConfig, QualityMode
from fwa_pipeline.domain.tally import counts
from fwa_pipeline.npi import valid_npi_mask

Severity = Literal["error", "warning"]
ClaimType = Literal["medical", "pharmacy"]

ISSUE_COLUMNS = ["claim_type", "claim_pk", "claim_id", "issue_type", "severity", "detail"]
KEY_COLUMNS = ["claim_type", "claim_pk"]
# The report lists at most this many issues (errors first); the rest are counted in `truncated`.
MAX_REPORTED_ISSUES = 10_000

# The columns of the store's claim tables that the schemas read (``claim_pk`` is the surrogate id).
MEDICAL_COLUMNS = [
    "claim_pk",
    "claim_id",
    "member_id",
    "provider_id",
    "service_date",
    "cpt_code",
    "modifier",
    "diagnosis_code",
    "units",
    "place_of_service",
    "amount_billed",
    "amount_paid",
]
PHARMACY_COLUMNS = [
    "claim_pk",
    "claim_id",
    "member_id",
    "prescriber_id",
    "pharmacy_id",
    "fill_date",
    "ndc_code",
    "quantity",
    "days_supply",
    "refill_number",
    "amount_billed",
    "amount_paid",
]
_COLUMNS: dict[ClaimType, list[str]] = {"medical": MEDICAL_COLUMNS, "pharmacy": PHARMACY_COLUMNS}

# Duplicate keys and the code amounts are compared within.
_SERVICE_KEY: dict[ClaimType, list[str]] = {
    "medical": ["provider_id", "member_id", "service_date", "cpt_code"],
    "pharmacy": ["member_id", "fill_date", "ndc_code"],
}
_DUPLICATE_ISSUE: dict[ClaimType, str] = {
    "medical": "duplicate_service",
    "pharmacy": "duplicate_fill",
}
_CODE_COLUMN: dict[ClaimType, str] = {"medical": "cpt_code", "pharmacy": "ndc_code"}
# The columns :func:`first_claim_pks` and :func:`amount_figures` read.
FIGURES_READ: dict[ClaimType, list[str]] = {
    t: ["claim_pk", "claim_id", code, "amount_billed"] for t, code in _CODE_COLUMN.items()
}
# Who each id column must name in the reference data.
_REFERENCES: dict[ClaimType, dict[str, str]] = {
    "medical": {"member_id": "member", "provider_id": "provider"},
    "pharmacy": {"member_id": "member", "prescriber_id": "prescriber", "pharmacy_id": "pharmacy"},
}

# Pandera's built-in checks, as issue types.
_BUILTIN_ISSUES = {"not_nullable": ("missing_value", "required value is empty")}


class QualityGateError(RuntimeError):
    """``halt_on_errors`` found claims with errors: ``failed`` claims, ``counts`` error issues
    per issue type."""

    def __init__(self, failed: int, counts: dict[str, int]) -> None:
        self.failed = failed
        self.counts = counts
        listed = ", ".join(f"{issue} {n:,}" for issue, n in counts.items())
        super().__init__(
            f"quality gate (halt_on_errors): {failed:,} claim(s) have errors (issues: {listed}); "
            "nothing was scored"
        )


# --------------------------------------------------------------------------- checks


def _check(
    issue_type: str, message: str, fn: Callable[[Any], Any], *, wide: bool = False
) -> pa.Check:
    # Wide (DataFrame) checks handle missing values themselves: Pandera would drop any row
    # with a missing cell in any column before calling them.
    return pa.Check(fn, name=issue_type, error=f"{issue_type}: {message}", ignore_na=not wide)


def _not_a_later_copy(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """False for the second and later rows (in landing order, ``claim_pk``) sharing ``keys``;
    rows missing part of the key are never copies."""
    if frame["claim_pk"].is_monotonic_increasing:  # as read: no reordering copy needed
        ordered = frame[keys]
    else:
        ordered = frame.loc[frame["claim_pk"].sort_values(kind="stable").index, keys]
    later = ordered.duplicated(keep="first") & ordered.notna().all(axis=1)
    return ~later.reindex(frame.index)


def _id_set(ids: Collection[str]) -> pa_arrow.Array:
    return pa_arrow.array(pd.unique(pd.Series(list(ids), dtype=object)), pa_arrow.large_string())


def _isin(values: pd.Series, allowed: pa_arrow.Array) -> pd.Series:
    # Arrow's hash lookup: several times faster than Series.isin on string columns.
    found = pc.is_in(strings(values), value_set=allowed).to_numpy(zero_copy_only=False)
    return pd.Series(found, index=values.index, dtype=bool)


def _dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, errors="coerce")


def _date_checks(as_of: dt.date | None) -> list[pa.Check]:
    def not_future(values: pd.Series) -> pd.Series:
        # None: "today" when the check runs, so a long-lived schema never goes stale.
        limit = pd.Timestamp(as_of if as_of is not None else dt.date.today())
        parsed = _dates(values)
        return parsed.isna() | (parsed <= limit)

    return [
        _check("invalid_date", "not a valid date", lambda s: _dates(s).notna()),
        _check("future_date", "after the run's as-of date", not_future),
    ]


def _valid_npi(values: pd.Series) -> pd.Series:
    # Claims repeat a few thousand NPIs: check each distinct one, then look them up.
    distinct = pc.unique(strings(values)).to_pandas()
    return _isin(values, _id_set(distinct[valid_npi_mask(distinct)]))


def _npi_check() -> pa.Check:
    return _check("invalid_npi", "not an NPI with a valid check digit", _valid_npi)


def _amount_columns() -> dict[str, pa.Column]:
    return {
        "amount_billed": pa.Column(
            nullable=False,
            checks=_check("invalid_amount", "must be greater than 0", lambda s: s > 0),
        ),
        "amount_paid": pa.Column(
            nullable=True,
            checks=_check("invalid_amount", "must not be negative", lambda s: s >= 0),
        ),
    }


def _duplicate_claim_id(taken: Collection[str], first_pks: pd.Series | None) -> pa.Check:
    """A claim id is unique within the workspace (data contract): a later row repeating an
    earlier one's is a duplicate, and so is one of ``taken``, ids of claims judged before and
    not among the rows (held ones: history carries only the claims that passed). A shard of the
    rows also gets ``first_pks``, the first ``claim_pk`` of the ids other shards hold too
    (:func:`first_claim_pks`): a row after it is a later copy."""
    taken_ids = _id_set(taken)

    def unique(df: pd.DataFrame) -> pd.Series:
        fine = _not_a_later_copy(df, ["claim_id"]) & ~_isin(df["claim_id"], taken_ids)
        if first_pks is None or first_pks.empty:
            return fine
        first = df["claim_id"].map(first_pks)
        return fine & ~(df["claim_pk"] > first).fillna(False).astype(bool)

    return _check(
        "duplicate_claim_id", "claim_id already used by an earlier claim", unique, wide=True
    )


def _required(*checks: pa.Check) -> pa.Column:
    return pa.Column(nullable=False, checks=list(checks))


def _optional() -> pa.Column:
    return pa.Column(nullable=True)


def medical_schema(
    as_of: dt.date | None = None,
    taken_claim_ids: Collection[str] = (),
    first_pks: pd.Series | None = None,
) -> pa.DataFrameSchema:
    """Conformance of a medical claim frame: required values, NPI, dates not after ``as_of``
    (today when None), amounts and units in range, and claim ids not reused (the later rows by
    ``claim_pk``, and any of ``taken_claim_ids``; the frame's index must be unique, as a fresh
    RangeIndex is). A shard of the claims gets the other shards' ``first_pks``
    (:func:`first_claim_pks`)."""
    return pa.DataFrameSchema(
        {
            "claim_pk": _required(),
            "claim_id": _required(),
            "member_id": _required(),
            "provider_id": _required(_npi_check()),
            "service_date": _required(*_date_checks(as_of)),
            "cpt_code": _required(),
            "modifier": _optional(),
            "diagnosis_code": _optional(),
            "units": _required(_check("invalid_units", "must be at least 1", lambda s: s >= 1)),
            "place_of_service": _optional(),
            **_amount_columns(),
        },
        checks=[_duplicate_claim_id(taken_claim_ids, first_pks)],
        name="medical_claims",
    )


def pharmacy_schema(
    as_of: dt.date | None = None,
    taken_claim_ids: Collection[str] = (),
    first_pks: pd.Series | None = None,
) -> pa.DataFrameSchema:
    """Conformance of a pharmacy claim frame (see :func:`medical_schema`)."""
    return pa.DataFrameSchema(
        {
            "claim_pk": _required(),
            "claim_id": _required(),
            "member_id": _required(),
            "prescriber_id": _required(_npi_check()),
            "pharmacy_id": _required(_npi_check()),
            "fill_date": _required(*_date_checks(as_of)),
            "ndc_code": _required(),
            "quantity": _required(
                _check("invalid_quantity", "must be greater than 0", lambda s: s > 0)
            ),
            "days_supply": _required(
                _check("invalid_days_supply", "must be 1-365", lambda s: s.between(1, 365))
            ),
            "refill_number": pa.Column(
                nullable=True,
                checks=_check("invalid_refill_number", "must be 0-99", lambda s: s.between(0, 99)),
            ),
            **_amount_columns(),
        },
        checks=[_duplicate_claim_id(taken_claim_ids, first_pks)],
        name="pharmacy_claims",
    )


# Schemas whose "not in the future" means today at validation time.
MEDICAL_SCHEMA = medical_schema()
PHARMACY_SCHEMA = pharmacy_schema()


def referential_schema(
    claim_type: ClaimType, member_ids: Collection[str], provider_ids: Collection[str]
) -> pa.DataFrameSchema:
    """Every member and provider id a claim names exists in the workspace's reference data
    (missing ids are the conformance schema's finding, not this one's)."""
    references = {"member": _id_set(member_ids), "provider": _id_set(provider_ids)}

    def column(role: str) -> pa.Column:
        reference = "member" if role == "member" else "provider"
        allowed = references[reference]
        return pa.Column(
            nullable=True,
            checks=_check(
                f"unknown_{role}",
                f"not among the workspace's {reference}s",
                lambda s: _isin(s, allowed),
            ),
        )

    return pa.DataFrameSchema(
        {name: column(role) for name, role in _REFERENCES[claim_type].items()},
        name=f"{claim_type}_referential_integrity",
    )


def duplicate_schema(claim_type: ClaimType) -> pa.DataFrameSchema:
    """A later row repeating an earlier one's service key (medical: provider, member, service
    date, CPT; pharmacy: member, fill date, NDC)."""
    keys = _SERVICE_KEY[claim_type]
    return pa.DataFrameSchema(
        {name: pa.Column(nullable=True) for name in ["claim_pk", *keys]},
        checks=[
            _check(
                _DUPLICATE_ISSUE[claim_type],
                f"same {', '.join(keys)} as an earlier claim row",
                lambda df: _not_a_later_copy(df, keys),
                wide=True,
            )
        ],
        name=f"{claim_type}_duplicates",
    )


# Per code and binary exponent, what amount figures hold: the count of positive amounts and the
# integer parts of their sum and sum of squares (mantissas split so that the sums of up to 2**26
# lines of one code and exponent stay exact in int64).
FIGURE_COLUMNS = ["lines", "sum_hi", "sum_lo", "sq_72", "sq_54", "sq_36", "sq_18", "sq_0"]


def amount_figures(claim_type: ClaimType, frame: pd.DataFrame) -> pd.DataFrame:
    """The exact figures of ``frame``'s positive ``amount_billed`` per code (index: code and
    binary exponent, columns ``FIGURE_COLUMNS``). Exact, so the figures of any split of the
    lines add up (:func:`merged_figures`) to those of all of them, and every split gives the
    same mean and SD."""
    code = _CODE_COLUMN[claim_type]
    amount = pd.to_numeric(frame["amount_billed"], errors="coerce").astype("float64")
    peers = ((amount > 0) & np.isfinite(amount) & frame[code].notna()).to_numpy()
    mantissa, exponent = np.frexp(amount.to_numpy()[peers])
    m = (mantissa * 2.0**53).astype(np.int64)  # amount == m * 2**(exponent - 53), exactly
    a, b, c = m >> 36, (m >> 18) & 0x3FFFF, m & 0x3FFFF
    parts = pd.DataFrame(
        {
            "code": frame[code].to_numpy()[peers],
            "exponent": exponent - 53,
            "lines": np.ones(len(m), dtype=np.int64),
            "sum_hi": m >> 27,
            "sum_lo": m & 0x7FFFFFF,
            # m * m == sq_72 << 72 + sq_54 << 54 + sq_36 << 36 + sq_18 << 18 + sq_0
            "sq_72": a * a,
            "sq_54": 2 * a * b,
            "sq_36": 2 * a * c + b * b,
            "sq_18": 2 * b * c,
            "sq_0": c * c,
        }
    )
    return parts.groupby(["code", "exponent"])[FIGURE_COLUMNS].sum()


def merged_figures(figures: list[pd.DataFrame]) -> pd.DataFrame:
    """The figures of all lines, from those of each part (:func:`amount_figures`)."""
    return pd.concat(figures).groupby(level=["code", "exponent"]).sum()


def amount_limits(figures: pd.DataFrame, outlier_sd: float, min_peers: int) -> pd.Series:
    """Per code with at least ``min_peers`` positive amounts, the amount above which a line is an
    outlier: their mean plus ``outlier_sd`` sample standard deviations (NaN for a single line),
    from exact sums (a code billed at one amount has a limit of that very amount)."""
    lines: dict[Any, int] = {}
    total: dict[Any, Fraction] = {}
    squares: dict[Any, Fraction] = {}
    for (code, exponent), row in zip(figures.index, figures.itertuples(index=False), strict=True):
        scale = Fraction(2) ** int(exponent)
        amounts = (int(row.sum_hi) << 27) + int(row.sum_lo)
        square = sum(int(getattr(row, f"sq_{bit}")) << bit for bit in (72, 54, 36, 18, 0))
        lines[code] = lines.get(code, 0) + int(row.lines)
        total[code] = total.get(code, Fraction(0)) + amounts * scale
        squares[code] = squares.get(code, Fraction(0)) + square * scale * scale
    limits = {}
    for code, n in lines.items():
        if n < min_peers:
            continue
        mean = total[code] / n
        sd = math.sqrt((squares[code] - total[code] * mean) / (n - 1)) if n > 1 else math.nan
        limits[code] = float(mean) + outlier_sd * sd
    return pd.Series(limits, dtype="float64")


def outlier_schema(
    claim_type: ClaimType, outlier_sd: float, min_peers: int, limits: pd.Series | None = None
) -> pa.DataFrameSchema:
    """``amount_billed`` more than ``outlier_sd`` standard deviations above the mean of its code's
    lines; codes with fewer than ``min_peers`` lines (with a positive amount) are not judged. A
    shard of the lines gets the ``limits`` of all of them (:func:`amount_limits`)."""
    code = _CODE_COLUMN[claim_type]

    def within_range(df: pd.DataFrame) -> pd.Series:
        amount = pd.to_numeric(df["amount_billed"], errors="coerce").astype("float64")
        found = limits
        if found is None:
            found = amount_limits(amount_figures(claim_type, df), outlier_sd, min_peers)
        return ~(amount > df[code].map(found)).fillna(False).astype(bool)

    return pa.DataFrameSchema(
        {
            "claim_pk": pa.Column(nullable=True),
            code: pa.Column(nullable=True),
            "amount_billed": pa.Column(nullable=True),
        },
        checks=[
            _check(
                "amount_outlier",
                f"amount_billed more than {outlier_sd:g} SD above the mean for its {code}",
                within_range,
                wide=True,
            )
        ],
        name=f"{claim_type}_amount_outliers",
    )


def first_claim_pks(frame: pd.DataFrame) -> pd.Series:
    """Each claim id of ``frame`` and the first (lowest) ``claim_pk`` using it."""
    return frame.groupby("claim_id")["claim_pk"].min()


def shared_first_pks(parts: list[pd.Series]) -> pd.Series:
    """The claim ids in more than one of ``parts`` (:func:`first_claim_pks` of each shard) and
    the first ``claim_pk`` among all of them: the duplicates no shard sees whole."""
    if not parts:
        return pd.Series(dtype="int64")
    every = pd.concat(parts)
    grouped = every.groupby(level=0)
    return grouped.min()[grouped.size() > 1]


class Elsewhere(NamedTuple):
    """What a shard's checks need of all the claims: ``first_pks`` (:func:`shared_first_pks`)
    and the amount ``limits`` per code (:func:`amount_limits`)."""

    first_pks: pd.Series
    limits: pd.Series


@dataclass(frozen=True)
class QualityCheck:
    """One named quality check over one claim type: what a Dagster asset check runs."""

    name: str  # conformance | referential_integrity | duplicates | outliers
    claim_type: ClaimType
    severity: Severity
    schema: pa.DataFrameSchema


def quality_checks(
    claim_type: ClaimType,
    *,
    as_of: dt.date | None,
    member_ids: Collection[str],
    provider_ids: Collection[str],
    config: QualityConfig,
    taken_claim_ids: Collection[str] = (),
    elsewhere: Elsewhere | None = None,
) -> list[QualityCheck]:
    """Every quality check for ``claim_type``, errors first; over a shard of the claims, with
    what the checks need of the ``elsewhere`` shards."""
    schema = medical_schema if claim_type == "medical" else pharmacy_schema
    first_pks, limits = (None, None) if elsewhere is None else elsewhere
    conformance = schema(as_of, taken_claim_ids, first_pks)
    return [
        QualityCheck("conformance", claim_type, "error", conformance),
        QualityCheck(
            "referential_integrity",
            claim_type,
            "error",
            referential_schema(claim_type, member_ids, provider_ids),
        ),
        QualityCheck("duplicates", claim_type, "warning", duplicate_schema(claim_type)),
        QualityCheck(
            "outliers",
            claim_type,
            "warning",
            outlier_schema(claim_type, config.outlier_sd, config.outlier_min_peers, limits),
        ),
    ]


# --------------------------------------------------------------------------- assessment


@dataclass(frozen=True)
class QualityResult:
    issues: pd.DataFrame  # ISSUE_COLUMNS
    report: dict[str, Any]


def empty_issues() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype="int64" if c == "claim_pk" else object) for c in ISSUE_COLUMNS}
    )


def _issues_from(check: QualityCheck, frame: pd.DataFrame) -> pd.DataFrame:
    try:
        check.schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return empty_issues()
    unplaced = cases["index"].isna()
    if unplaced.any():
        # A failure with no row: a check crashed or the frame's shape is wrong. Not a data issue.
        checks = sorted(cases.loc[unplaced, "check"].astype(str).unique())
        raise ValueError(f"{check.claim_type} {check.name} check could not run: {checks}")
    cases = cases.drop_duplicates(["index", "check", "column"])
    text = cases["check"].astype(str)
    parsed = {t: _parse_check(t) for t in text.unique()}
    message = text.map(lambda t: parsed[t][1])
    # Column checks name their column; wide checks name theirs in the message, once per row.
    column_level = cases["schema_context"].eq("Column").to_numpy()
    detail = np.where(column_level, cases["column"].astype(str) + ": " + message, message)
    rows = frame.loc[cases["index"].astype("int64").to_numpy()]
    issues = pd.DataFrame(
        {
            "claim_type": check.claim_type,
            "claim_pk": rows["claim_pk"].to_numpy(),
            "claim_id": rows["claim_id"].to_numpy(),
            "issue_type": text.map(lambda t: parsed[t][0]).to_numpy(),
            "severity": check.severity,
            "detail": detail,
        }
    )
    return issues.drop_duplicates(["claim_pk", "issue_type", "detail"])


def _parse_check(text: str) -> tuple[str, str]:
    """(issue type, message) of a failure case's check text."""
    if text in _BUILTIN_ISSUES:
        return _BUILTIN_ISSUES[text]
    issue_type, sep, message = text.partition(": ")
    return (issue_type, message) if sep else (text, text)


@cache
def _register_backends() -> None:
    """Pandera registers its pandas backends on the first validation, unguarded by a lock."""
    pa.DataFrameSchema.get_backend(check_type=pd.DataFrame)


def check_shape(claim_type: ClaimType, frame: pd.DataFrame) -> None:
    """Fail on a frame lacking a column the checks read: a programming error, not bad data."""
    missing = [c for c in _COLUMNS[claim_type] if c not in frame.columns]
    if missing:
        raise ValueError(f"{claim_type} claims frame lacks columns: {', '.join(missing)}")


def assess_quality(
    medical: pd.DataFrame,
    pharmacy: pd.DataFrame,
    member_ids: Collection[str],
    provider_ids: Collection[str],
    config: QualityConfig,
    as_of: dt.date | None,
    taken_claim_ids: Mapping[ClaimType, Collection[str]] | None = None,
) -> QualityResult:
    """Run every quality check over both claim frames; the issues and the run's quality report.

    Duplicates (claim ids and service keys) are judged among the rows given, in landing order
    (``claim_pk``): pass the history the check should see along with the new claims, and per
    claim type the ids of claims judged before that are not among them (``taken_claim_ids``).
    """
    frames: dict[ClaimType, pd.DataFrame] = {"medical": medical, "pharmacy": pharmacy}
    for claim_type, frame in frames.items():
        check_shape(claim_type, frame)

    def issues_of(claim_type: ClaimType) -> list[pd.DataFrame]:
        return claim_issues(
            claim_type,
            frames[claim_type],
            as_of=as_of,
            member_ids=member_ids,
            provider_ids=provider_ids,
            config=config,
            taken_claim_ids=(taken_claim_ids or {}).get(claim_type, ()),
        )

    # The two claim types are checked in two threads (a fifth less time on a million claims:
    # the Arrow kernels under the checks release the GIL). Each thread reads its own frame
    # only, and Pandera's backends are registered before either starts.
    _register_backends()
    with ThreadPoolExecutor(len(frames)) as pool:
        found = [issues for part in pool.map(issues_of, frames) for issues in part]
    return quality_result(found, {claim_type: len(frame) for claim_type, frame in frames.items()})


def claim_issues(
    claim_type: ClaimType,
    frame: pd.DataFrame,
    *,
    as_of: dt.date | None,
    member_ids: Collection[str],
    provider_ids: Collection[str],
    config: QualityConfig,
    taken_claim_ids: Collection[str] = (),
    elsewhere: Elsewhere | None = None,
) -> list[pd.DataFrame]:
    """The issues of every check over ``frame``'s claims of ``claim_type`` (over a shard of them,
    with what the checks need of the ``elsewhere`` shards), one frame per check."""
    if frame.empty:
        return []
    _register_backends()
    positional = frame.reset_index(drop=True)
    checks = quality_checks(
        claim_type,
        as_of=as_of,
        member_ids=member_ids,
        provider_ids=provider_ids,
        config=config,
        taken_claim_ids=taken_claim_ids,
        elsewhere=elsewhere,
    )
    return [_issues_from(check, positional) for check in checks]


def quality_result(found: list[pd.DataFrame], totals: dict[ClaimType, int]) -> QualityResult:
    """The issues ``found`` (:func:`claim_issues`) in one order, errors first, and the report
    over ``totals`` claims per claim type. Each claim's issues come in the order its checks
    found them; the claims and checks may come in any order."""
    # Empty frames are left out: their text columns are ``object``, which would turn the
    # others' strings into ``object`` depending on which checks (or shards) found nothing.
    found = [issues for issues in found if not issues.empty]
    issues = pd.concat(found, ignore_index=True) if found else empty_issues()
    issues = issues.sort_values(
        ["severity", "claim_type", "claim_pk", "issue_type"], kind="stable"
    ).reset_index(drop=True)  # "error" sorts before "warning"
    return QualityResult(issues=issues, report=quality_report(issues, totals))


def quality_report(issues: pd.DataFrame, totals: dict[ClaimType, int]) -> dict[str, Any]:
    """The JSON-serialisable report stored with the run (with counts)."""
    errors = issues[issues["severity"] == "error"]
    failed_by_type = errors.drop_duplicates(KEY_COLUMNS)["claim_type"].value_counts()
    failed = int(failed_by_type.sum())
    total = int(sum(totals.values()))
    listed = issues.head(MAX_REPORTED_ISSUES)
    return {
        "total_claims": total,
        "passed": total - failed,
        "failed": failed,
        "by_claim_type": {
            claim_type: {"total": int(n), "failed": int(failed_by_type.get(claim_type, 0))}
            for claim_type, n in totals.items()
        },
        "counts_by_type": counts(issues["issue_type"]),
        "counts_by_severity": counts(issues["severity"]),
        "issues": _records(listed, ["claim_type", "claim_id", "issue_type", "severity", "detail"]),
        "truncated": len(issues) - len(listed),
    }


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """``frame[columns].astype(object).to_dict(orient="records")`` for text columns, built
    column by column: a tenth of the time for the 10,000 issues a report lists."""
    values = [frame[c].astype(object).tolist() for c in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


# --------------------------------------------------------------------------- the gate


def held_back(issues: pd.DataFrame, mode: QualityMode | str) -> pd.DataFrame:
    """The claims the gate holds back under ``mode``, given their quality ``issues``
    (``claim_type, claim_pk`` and ``reason``, the claim's error types sorted and comma-separated):
    ``skip_invalid`` holds back claims with errors, ``flag_only`` lets everything on,
    ``halt_on_errors`` raises :class:`QualityGateError` when any claim has an error. Warnings
    never hold a claim back."""
    mode = QualityMode(mode)
    all_errors = issues.loc[issues["severity"] == "error", [*KEY_COLUMNS, "issue_type"]]
    errors = all_errors.drop_duplicates()
    reasons = (
        errors.sort_values("issue_type", kind="stable")
        .groupby(KEY_COLUMNS, sort=False)["issue_type"]
        .agg(",".join)
        .rename("reason")
        .reset_index()
    )
    held = errors[KEY_COLUMNS].drop_duplicates().merge(reasons, on=KEY_COLUMNS)
    if mode is QualityMode.halt_on_errors and not held.empty:
        raise QualityGateError(len(held), counts(all_errors["issue_type"]))
    return held if mode is QualityMode.skip_invalid else held.iloc[0:0]


def passing(frame: pd.DataFrame, held: pd.DataFrame, claim_type: ClaimType) -> pd.DataFrame:
    """The claims of ``frame`` (of ``claim_type``) that ``held`` does not hold back; ``frame``
    itself when none is (a row filter copies every column of a million-row frame)."""
    pks = held.loc[held["claim_type"] == claim_type, "claim_pk"]
    return frame if pks.empty else frame[~frame["claim_pk"].isin(pks)]
