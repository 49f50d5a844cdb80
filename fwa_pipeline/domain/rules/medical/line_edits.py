"""Edits of a single line against its member, its provider and its code: service after death,
gender and age inconsistent with the code, excluded provider, amount far above the code's mean."""

from __future__ import annotations

import math
from fractions import Fraction

import pandas as pd

from fwa_pipeline.domain.config import RuleParams
from fwa_pipeline.domain.rules.aggregates import (
    PeerAggregates,
    cents,
    from_square_digits,
    square_digits,
)
from fwa_pipeline.domain.rules.base import Key, PeerPhases, RuleContext, empty_hits, rule
from fwa_pipeline.domain.rules.medical._common import (
    codes,
    medical_hits,
    numeric,
    z_severity,
)

# Only a definite F/M on both sides can conflict (U, blank and unknown members never do).
GENDERS = ["F", "M"]


@rule("RULE-MED-006", key=Key.LINE, reads=("member_id", "service_date"))
def service_after_death(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A line whose service date is after the member's date of death. The evidence says how
    many days after, not the date of death (PHI, shown only on the member record)."""
    claims = ctx.medical
    if claims.empty:
        return empty_hits()
    rows = claims[claims["member_days_after_death"].notna()]
    evidence = pd.DataFrame(
        {
            "service_date": rows["service_date"],
            "days_after_death": rows["member_days_after_death"],
        }
    )
    return medical_hits(rows, subject="claim", severity=1.0, evidence=evidence)


@rule("RULE-MED-007", key=Key.LINE, reads=("member_id", "cpt_code"))
def gender_inconsistent(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A code restricted to one gender billed for a member recorded as the other."""
    claims = ctx.medical
    if claims.empty:
        return empty_hits()
    member, code = codes(claims["member_gender"]), codes(claims["cpt_gender"])
    conflict = member.isin(GENDERS) & code.isin(GENDERS) & (member != code)
    rows = claims[conflict.fillna(False).astype(bool)]
    evidence = pd.DataFrame(
        {
            "member_gender": member[rows.index],
            "code_gender": code[rows.index],
            "cpt_code": rows["cpt_code"],
        }
    )
    return medical_hits(rows, subject="claim", severity=1.0, evidence=evidence)


@rule("RULE-MED-008", key=Key.LINE, reads=("member_id", "service_date", "cpt_code"))
def age_inconsistent(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A member's age on the service date below the code's ``min_age`` or above its
    ``max_age`` (a blank bound is no bound; an unknown age never hits), as enrichment found
    it (``member_age_bound``). The evidence names the bound crossed, not the age: the age is
    derived from the date of birth (PHI), which only the member record shows, to the roles
    allowed to see it and with an audit entry."""
    claims = ctx.medical
    if claims.empty:
        return empty_hits()
    rows = claims[claims["member_age_bound"].notna()]
    evidence = pd.DataFrame(
        {
            "age": rows["member_age_bound"],
            "min_age": numeric(rows["cpt_min_age"]),
            "max_age": numeric(rows["cpt_max_age"]),
            "cpt_code": rows["cpt_code"],
        }
    )
    return medical_hits(rows, subject="claim", severity=1.0, evidence=evidence)


@rule("RULE-MED-009", key=Key.LINE, reads=("provider_id", "service_date"))
def excluded_provider(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """Every line of an excluded provider serviced on or after its exclusion date. An exclusion
    without a date covers every line: the provider is on the list, and nothing dates it later."""
    claims = ctx.medical
    if claims.empty:
        return empty_hits()
    since = claims["provider_exclusion_date"]
    covered = since.isna() | (claims["service_date"] >= since)
    rows = claims[claims["provider_excluded"].fillna(False).astype(bool) & covered]
    evidence = pd.DataFrame(
        {
            "service_date": rows["service_date"],
            "exclusion_date": rows["provider_exclusion_date"],
        }
    )
    return medical_hits(rows, subject="provider", severity=1.0, evidence=evidence)


def code_amount_aggregates(claims: pd.DataFrame, params: RuleParams) -> PeerAggregates:
    """Per code: its lines with an amount, the sum of their cents and of its squares."""
    amount = numeric(claims["amount_billed"])
    billed = cents(amount[amount.notna()])
    sums = pd.concat([billed.rename("cents"), square_digits(billed)], axis=1)
    totals = sums.groupby(claims.loc[billed.index, "cpt_code"].rename("cpt_code")).sum()
    # A code none of whose lines has an amount still counts its zero lines (as before: NaN
    # mean and SD, never judged).
    codes = claims["cpt_code"].dropna().unique()
    totals = totals.reindex(pd.Index(codes, name="cpt_code"), fill_value=0)
    lines = amount.notna().groupby(claims["cpt_code"]).sum().rename("cpt_lines")
    return PeerAggregates.of(totals.join(lines))


def code_amount_statistics(totals: pd.DataFrame) -> pd.DataFrame:
    """Per code: its lines with an amount, their mean and sample standard deviation, exact
    from the integer sums (rounded once each)."""
    rows = []
    for n, total, squares in zip(
        totals["cpt_lines"].tolist(),
        totals["cents"].tolist(),
        totals.apply(from_square_digits, axis=1).tolist() if len(totals) else [],
        strict=True,
    ):
        mean = Fraction(total, 100 * n) if n else None
        variance = Fraction(n * squares - total * total, 10_000 * n * (n - 1)) if n > 1 else None
        rows.append(
            (
                float(mean) if mean is not None else math.nan,
                math.sqrt(variance) if variance is not None else math.nan,
            )
        )
    mean, sd = zip(*rows, strict=True) if rows else ((), ())
    return pd.DataFrame(
        {"cpt_mean": mean, "cpt_sd": sd, "cpt_lines": totals["cpt_lines"]},
        index=totals.index,
    )


def code_amount_compare(
    claims: pd.DataFrame, statistics: pd.DataFrame, params: RuleParams
) -> pd.DataFrame:
    """Hits on the lines billed far above their code's mean."""
    t = params.thresholds
    amount = numeric(claims["amount_billed"])
    # The codes first: an index looked up in a million-row string column takes seconds.
    judged = statistics[statistics.index.isin(claims["cpt_code"].unique())]
    per_line = code_amount_statistics(judged).reindex(claims["cpt_code"]).set_axis(claims.index)
    mean, sd, lines = per_line["cpt_mean"], per_line["cpt_sd"], per_line["cpt_lines"]
    z = (amount - mean) / sd.where(sd > 0)
    hit = (z > t["sd"]) & (lines >= t["min_lines"])
    rows = claims[hit]
    evidence = pd.DataFrame(
        {
            "amount_billed": amount[hit],
            "cpt_mean": mean[hit],
            "cpt_sd": sd[hit],
            "cpt_lines": lines[hit],
            "z": z[hit],
            "threshold_sd": t["sd"],
            "threshold_amount": (mean + t["sd"] * sd)[hit],
        }
    )
    severity = z_severity(z[hit], t["full_severity_sd"])
    return medical_hits(rows, subject="claim", severity=severity, evidence=evidence)


# A line is judged against every line of its code: the code is the subject to shard by.
AMOUNT_OUTLIER = PeerPhases("cpt_code", code_amount_aggregates, code_amount_compare)


@rule("RULE-MED-012", key=Key.PEERS, reads=("cpt_code", "amount_billed"), phases=AMOUNT_OUTLIER)
def amount_outlier(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A line billed more than ``sd`` standard deviations above the mean of its code's lines
    (codes with fewer than ``min_lines`` lines are not judged); severity grows with the distance,
    reaching 1 at ``full_severity_sd``."""
    return AMOUNT_OUTLIER.run(ctx.medical, params)
