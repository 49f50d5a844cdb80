"""Edits over the lines of one day: the same member and provider (duplicates, NCCI pairs, MUE) or
one provider's whole day (impossible day)."""

from __future__ import annotations

import pandas as pd

from fwa_pipeline.domain.config import RuleParams
from fwa_pipeline.domain.rules.base import Key, RuleContext, empty_hits, rule
from fwa_pipeline.domain.rules.medical._common import (
    code_set,
    codes,
    duplicate_copies,
    flags,
    group_sum,
    medical_hits,
    numeric,
    repeated,
)

VISIT = ["member_id", "provider_id", "service_date"]
DUPLICATE_KEYS = [*VISIT, "cpt_code", "units", "amount_billed"]


@rule(
    "RULE-MED-001",
    key=Key.MEMBER_DAY,
    reads=("member_id", "provider_id", "service_date", "cpt_code", "units", "amount_billed"),
)
def duplicate_claim(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """Same member, provider, date, code, units and amount under another claim id: every copy but
    the one with the smallest claim id."""
    claims = ctx.medical
    if claims.empty:
        return empty_hits()
    # Units and amounts compared as numbers (an amount may arrive as 120 or 120.00).
    keyed = claims[["claim_id", *VISIT, "cpt_code"]].assign(
        units=numeric(claims["units"]), amount_billed=numeric(claims["amount_billed"]).round(2)
    )
    # Copies agree on every key, so narrowing on all but the member first spares hashing the
    # member id of every line.
    near = repeated(keyed, DUPLICATE_KEYS[1:])
    copies = duplicate_copies(keyed.loc[near.index], DUPLICATE_KEYS)
    lines = claims.loc[copies.index]
    evidence = pd.DataFrame(
        {
            "first_claim_id": copies["first_claim_id"],
            "copy_number": copies["copy_number"],
            "copies": copies["copies"],
            "service_date": lines["service_date"],
            "cpt_code": lines["cpt_code"],
            "units": keyed.loc[copies.index, "units"],
            "amount_billed": keyed.loc[copies.index, "amount_billed"],
        }
    )
    return medical_hits(lines, subject="claim", severity=1.0, evidence=evidence)


@rule(
    "RULE-MED-002",
    key=Key.MEMBER_DAY,
    reads=("member_id", "provider_id", "service_date", "cpt_code", "modifier"),
)
def unbundling(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """The column-2 line of an NCCI pair billed with its column-1 code for the same member,
    provider and date, unless the pair allows a modifier and the column-2 line carries one of
    ``allowed_modifiers`` (the NCCI modifier goes on the column-2 code)."""
    claims, ncci = ctx.medical, ctx.ncci
    if claims.empty or ncci.empty:
        return empty_hits()
    pairs = pd.DataFrame(
        {
            "column1_code": codes(ncci["column1_code"]),
            "cpt_code": codes(ncci["column2_code"]),
            "modifier_allowed": flags(ncci["modifier_allowed"]),
        }
    ).dropna(subset=["column1_code", "cpt_code"])
    pairs = pairs[pairs["column1_code"] != pairs["cpt_code"]]  # a code never unbundles itself
    # Only lines of an edited code, in a visit with another such line, can form a pair (and
    # only if their provider-day has another: a cheaper first cut). The visit becomes one
    # integer so the self-join below stays cheap.
    lines = claims.loc[
        claims["cpt_code"].isin(pd.concat([pairs["column1_code"], pairs["cpt_code"]])),
        [*VISIT, "cpt_code"],
    ]
    lines = lines.loc[repeated(lines, ["provider_id", "service_date"]).index]
    visit = repeated(lines, VISIT)
    lines = lines.loc[visit.index].assign(visit=visit)
    column2 = lines.loc[lines["cpt_code"].isin(pairs["cpt_code"]), ["visit", "cpt_code"]]
    column1 = lines.loc[lines["cpt_code"].isin(pairs["column1_code"]), ["visit", "cpt_code"]]
    found = (
        column2.reset_index(names="row")
        .merge(column1.drop_duplicates().rename(columns={"cpt_code": "column1_code"}), on="visit")
        .merge(pairs, on=["column1_code", "cpt_code"])
    )
    found["modifier"] = claims.loc[found["row"], "modifier"].to_numpy()
    allowed = code_set(params.thresholds["allowed_modifiers"])
    excused = found["modifier_allowed"] & codes(found["modifier"]).isin(allowed).fillna(False)
    # A line paired with several column-1 codes is one hit, on its first unexcused pair.
    found = found[~excused.astype(bool)].drop_duplicates("row")
    rows = claims.loc[found["row"]]
    evidence = pd.DataFrame(
        {
            "column1_code": found["column1_code"].to_numpy(),
            "column2_code": found["cpt_code"].to_numpy(),
            "modifier": found["modifier"].to_numpy(),
            "modifier_allowed": found["modifier_allowed"].to_numpy(),
            "allowed_modifiers": [list(params.thresholds["allowed_modifiers"])] * len(found),
            "service_date": rows["service_date"].to_numpy(),
        },
        index=rows.index,
    )
    return medical_hits(rows, subject="claim", severity=1.0, evidence=evidence)


@rule(
    "RULE-MED-003",
    key=Key.MEMBER_DAY,
    reads=("member_id", "provider_id", "service_date", "cpt_code", "units"),
)
def units_over_mue(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """Every line of a (member, provider, code, date) whose summed units exceed the code's
    ``mue_limit`` (codes without a limit are never checked)."""
    claims = ctx.medical
    if claims.empty:
        return empty_hits()
    limit = numeric(claims["cpt_mue_limit"])
    units = numeric(claims["units"])
    checked = claims.loc[limit.notna() & units.notna(), [*VISIT, "cpt_code"]]
    # A member's units of a code on a day are at most the provider's: only provider-days over
    # the limit need the (costlier) member-level sums.
    provider_day = group_sum(units, checked, ["provider_id", "cpt_code", "service_date"])
    checked = checked.loc[provider_day.index[provider_day > limit[provider_day.index]]]
    total = group_sum(units, checked, [*VISIT, "cpt_code"])
    total = total[total > limit[total.index]]
    rows = claims.loc[total.index]
    evidence = pd.DataFrame(
        {
            "units_total": total,
            "line_units": units[rows.index],
            "mue_limit": limit[rows.index],
            "cpt_code": rows["cpt_code"],
            "service_date": rows["service_date"],
        }
    )
    return medical_hits(rows, subject="claim", severity=1.0, evidence=evidence)


@rule(
    "RULE-MED-004", key=Key.PROVIDER_DAY, reads=("provider_id", "service_date", "cpt_code", "units")
)
def impossible_day(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """Every timed line of a provider whose day sums (minutes per unit x units) above
    ``impossible_minutes`` (severity 1) or above ``improbable_minutes`` (``improbable_severity``).
    """
    claims = ctx.medical
    if claims.empty:
        return empty_hits()
    t = params.thresholds
    minutes = numeric(claims["cpt_minutes_per_unit"]) * numeric(claims["units"])
    timed = claims.loc[minutes.notna(), ["provider_id", "service_date"]]
    total = group_sum(minutes, timed, ["provider_id", "service_date"])
    impossible = total > t["impossible_minutes"]
    improbable = total > t["improbable_minutes"]
    rows = claims.loc[total.index[improbable]]
    impossible = impossible[improbable]
    evidence = pd.DataFrame(
        {
            "finding": impossible.map({True: "impossible", False: "improbable"}),
            "provider_minutes": total[improbable],
            "threshold_minutes": impossible.map(
                {True: t["impossible_minutes"], False: t["improbable_minutes"]}
            ),
            "line_minutes": minutes[rows.index],
            "service_date": rows["service_date"],
        }
    )
    severity = impossible.map({True: 1.0, False: float(t["improbable_severity"])})
    return medical_hits(rows, subject="provider", severity=severity, evidence=evidence)
