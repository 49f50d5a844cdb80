"""An independent, straightforward reading of rules.md, used to check the generator's labels.

It reads the written CSVs the way a rule engine would (text ids, ISO dates, blank = missing) and
returns, per rule, the claim ids the rule's default test hits. Where the spec leaves a choice open
(which peers, whether supply carries over), ``variant`` picks one, so a test can demand that the
labels hold under every reasonable reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fwa_pipeline.reference import is_benzodiazepine

ALLOWED_MODIFIERS = {"59", "XE", "XS", "XP", "XU"}


@dataclass
class Batch:
    medical: pd.DataFrame
    pharmacy: pd.DataFrame
    members: pd.DataFrame
    providers: pd.DataFrame
    cpt: pd.DataFrame
    ncci: pd.DataFrame
    ndc: pd.DataFrame
    labels: pd.DataFrame

    @classmethod
    def read(cls, directory: Path) -> Batch:
        def read(name: str) -> pd.DataFrame:
            return pd.read_csv(directory / f"{name}.csv", dtype=str, keep_default_na=False)

        medical = read("medical_claims")
        medical["service_date"] = pd.to_datetime(medical["service_date"])
        medical["units"] = medical["units"].astype(int)
        medical["amount"] = medical["amount_billed"].astype(float)
        pharmacy = read("pharmacy_claims")
        pharmacy["fill_date"] = pd.to_datetime(pharmacy["fill_date"])
        for column in ("quantity", "amount_billed"):
            pharmacy[column] = pharmacy[column].astype(float)
        for column in ("days_supply", "refill_number"):
            pharmacy[column] = pharmacy[column].astype(int)
        members = read("members")
        for column in ("date_of_birth", "date_of_death"):
            members[column] = pd.to_datetime(members[column].replace("", None))
        providers = read("providers")
        providers["exclusion_date"] = pd.to_datetime(providers["exclusion_date"].replace("", None))
        cpt = read("cpt_reference")
        for column in ("minutes_per_unit", "mue_limit", "min_age", "max_age", "em_level"):
            cpt[column] = pd.to_numeric(cpt[column].replace("", None))
        ndc = read("ndc_reference")
        for column in ("dea_schedule", "mme_factor", "strength_per_unit", "max_daily_quantity"):
            ndc[column] = pd.to_numeric(ndc[column].replace("", None))
        medical = medical.merge(cpt, on="cpt_code", how="left")
        pharmacy = pharmacy.merge(ndc, on="ndc_code", how="left")
        return cls(medical, pharmacy, members, providers, cpt, read("ncci_edits"), ndc,
                   read("labels"))  # fmt: skip


def robust_z(values: pd.Series, groups: pd.Series | None = None) -> pd.Series:
    frame = pd.DataFrame({"x": values, "g": 0 if groups is None else groups})
    median = frame.groupby("g")["x"].transform("median")
    mad = (frame["x"] - median).abs().groupby(frame["g"]).transform("median")
    return 0.6745 * (frame["x"] - median) / mad.replace(0, np.nan)


def evaluate(batch: Batch, variant: dict[str, object] | None = None) -> dict[str, set[str]]:
    v = {"peers_min_members": False, "modifier_peers": "specialty", "carry_over": True,
         "drug_key": "ndc_code", **(variant or {})}  # fmt: skip
    hits = {}
    hits.update(_medical(batch, v))
    hits.update(_pharmacy(batch, v))
    return hits


def _medical(b: Batch, v: dict[str, object]) -> dict[str, set[str]]:
    m = b.medical.merge(
        b.members[["member_id", "gender", "date_of_birth", "date_of_death"]].rename(
            columns={"gender": "member_gender"}
        ),
        on="member_id",
        how="left",
    ).merge(
        b.providers[["provider_id", "specialty", "state", "excluded", "exclusion_date"]],
        on="provider_id",
        how="left",
    )
    out: dict[str, set[str]] = {}
    ids = m["claim_id"]

    key = ["member_id", "provider_id", "service_date", "cpt_code", "units", "amount_billed"]
    ranked = m.sort_values("claim_id").groupby(key).cumcount()
    out["RULE-MED-001"] = set(m.loc[ranked.sort_index() > 0, "claim_id"])

    visit = ["member_id", "provider_id", "service_date"]
    pairs = b.ncci.assign(allowed=b.ncci["modifier_allowed"] == "true")
    col1 = m[[*visit, "cpt_code"]].rename(columns={"cpt_code": "column1_code"})
    col2 = m[[*visit, "cpt_code", "modifier", "claim_id"]].rename(
        columns={"cpt_code": "column2_code"}
    )
    joined = col2.merge(pairs, on="column2_code").merge(col1, on=[*visit, "column1_code"])
    excused = joined["allowed"] & joined["modifier"].isin(ALLOWED_MODIFIERS)
    out["RULE-MED-002"] = set(joined.loc[~excused, "claim_id"])

    group = ["member_id", "provider_id", "cpt_code", "service_date"]
    units = m.groupby(group)["units"].transform("sum")
    out["RULE-MED-003"] = set(ids[units > m["mue_limit"]])

    timed = m["minutes_per_unit"].notna()
    minutes = (
        (m["minutes_per_unit"].fillna(0) * m["units"])
        .groupby([m["provider_id"], m["service_date"]])
        .transform("sum")
    )
    out["RULE-MED-004"] = set(ids[timed & (minutes > 12 * 60)])

    em = m[m["em_level"].notna()]
    per = em.groupby("provider_id").agg(
        share=("em_level", lambda s: (s >= 4).mean()), specialty=("specialty", "first")
    )
    per["members"] = m.groupby("provider_id")["member_id"].nunique().reindex(per.index)
    peers = per[per["members"] >= 30] if v["peers_min_members"] else per
    p90 = peers.groupby("specialty")["share"].quantile(0.9)
    z = robust_z(peers["share"], peers["specialty"])
    flagged = peers.index[
        (peers["share"] > peers["specialty"].map(p90)) & (z >= 3.5) & (peers["members"] >= 30)
    ]
    out["RULE-MED-005"] = set(em.loc[em["provider_id"].isin(flagged) & (em["em_level"] >= 4),
                                     "claim_id"])  # fmt: skip

    out["RULE-MED-006"] = set(ids[m["service_date"] > m["date_of_death"]])
    gendered = m["gender"].isin(["F", "M"]) & m["member_gender"].isin(["F", "M"])
    out["RULE-MED-007"] = set(ids[gendered & (m["gender"] != m["member_gender"])])
    age = _age(m["date_of_birth"], m["service_date"])
    outside = (age < m["min_age"].fillna(-1)) | (age > m["max_age"].fillna(1000))
    out["RULE-MED-008"] = set(ids[outside])
    out["RULE-MED-009"] = set(
        ids[(m["excluded"] == "true") & (m["exclusion_date"] <= m["service_date"])]
    )

    lines = m.assign(mod=m["modifier"].isin(["25", "59"]))
    per = lines.groupby("provider_id").agg(share=("mod", "mean"), specialty=("specialty", "first"))
    peer_group = per["specialty"] if v["modifier_peers"] == "specialty" else None
    z = robust_z(per["share"], peer_group)
    p90 = (per.groupby("specialty")["share"].transform(lambda s: s.quantile(0.9))
           if peer_group is not None else per["share"].quantile(0.9))  # fmt: skip
    flagged = per.index[(per["share"] > p90) & (z >= 3.5)]
    out["RULE-MED-010"] = set(lines.loc[lines["provider_id"].isin(flagged) & lines["mod"],
                                        "claim_id"])  # fmt: skip

    per = m.groupby("provider_id").agg(
        billed=("amount", "sum"), services=("claim_id", "size"), members=("member_id", "nunique"),
        specialty=("specialty", "first"), state=("state", "first"),
    )  # fmt: skip
    group = per["specialty"].where(
        per.groupby(["specialty", "state"])["billed"].transform("size") < 20,
        per["specialty"] + "/" + per["state"],
    )
    z_billed = robust_z(per["billed"] / per["members"], group)
    z_services = robust_z(per["services"] / per["members"], group)
    flagged = per.index[(z_billed >= 3.5) | (z_services >= 3.5)]
    out["RULE-MED-011"] = set(ids[m["provider_id"].isin(flagged)])

    stats = m.groupby("cpt_code")["amount"].agg(["mean", "std"])
    limit = m["cpt_code"].map(stats["mean"] + 3 * stats["std"].fillna(0))
    out["RULE-MED-012"] = set(ids[m["amount"] > limit])
    return out


def _age(dob: pd.Series, on: pd.Series) -> pd.Series:
    before_birthday = (on.dt.month < dob.dt.month) | (
        (on.dt.month == dob.dt.month) & (on.dt.day < dob.dt.day)
    )
    return on.dt.year - dob.dt.year - before_birthday.astype(int)


def _pharmacy(b: Batch, v: dict[str, object]) -> dict[str, set[str]]:
    r = b.pharmacy.merge(
        b.members[["member_id", "date_of_death"]], on="member_id", how="left"
    ).merge(
        b.providers[["provider_id", "provider_type", "excluded", "exclusion_date"]].rename(
            columns={"provider_id": "prescriber_id"}
        ),
        on="prescriber_id",
        how="left",
    )
    r["drug"] = r["drug_name"].str.split().str[0].str.lower()
    out: dict[str, set[str]] = {}
    ids = r["claim_id"]
    duplicate = (
        r.sort_values("claim_id")
        .groupby(["member_id", "ndc_code", "fill_date", "pharmacy_id"])
        .cumcount()
        .sort_index()
        > 0
    )
    out["RULE-RX-009"] = set(ids[duplicate])
    out["RULE-RX-001"] = _early_refills(r[~duplicate], v)

    controlled = r[r["dea_schedule"].between(2, 5)]
    shopping: set[str] = set()
    for _, fills in controlled.groupby("member_id"):
        if fills["prescriber_id"].nunique() < 4 or fills["pharmacy_id"].nunique() < 4:
            continue
        fills = fills.sort_values("fill_date")
        for start in fills["fill_date"]:
            window = fills[(fills["fill_date"] >= start)
                           & (fills["fill_date"] < start + pd.Timedelta(days=180))]  # fmt: skip
            if window["prescriber_id"].nunique() >= 4 and window["pharmacy_id"].nunique() >= 4:
                shopping |= set(window["claim_id"])
    out["RULE-RX-002"] = shopping

    opioid = r[r["mme_factor"].notna()].copy()
    opioid["mme"] = (opioid["strength_per_unit"] * opioid["quantity"] / opioid["days_supply"]
                     * opioid["mme_factor"])  # fmt: skip
    # One row per opioid fill and day of its supply; MME summed per member and day.
    days = opioid.loc[opioid.index.repeat(opioid["days_supply"])]
    days = days.assign(
        day=days["fill_date"] + pd.to_timedelta(days.groupby(level=0).cumcount(), unit="D")
    )
    daily = days.groupby(["member_id", "day"])["mme"].transform("sum") >= 90 - 1e-9
    heavy_days = days[daily].drop_duplicates(["member_id", "day"])
    members = heavy_days["member_id"].value_counts()
    heavy = days[daily & days["member_id"].map(members).ge(15).fillna(False).to_numpy()]
    high = set(heavy["claim_id"])
    out["RULE-RX-003"] = high

    benzo = r[is_benzodiazepine(r["drug_name"])]
    both = benzo.merge(opioid[["member_id", "claim_id", "fill_date", "days_supply"]],
                       on="member_id", suffixes=("", "_o"))  # fmt: skip
    start = np.maximum(both["fill_date"], both["fill_date_o"])
    end = np.minimum(both["fill_date"] + pd.to_timedelta(both["days_supply"], "D"),
                     both["fill_date_o"] + pd.to_timedelta(both["days_supply_o"], "D"))  # fmt: skip
    both["overlap"] = (end - start).dt.days.clip(lower=0)
    both = both[both["overlap"] > 0]
    per_member = both.groupby("member_id").agg(
        overlap=("overlap", "sum"), benzos=("claim_id", "nunique")
    )
    flagged = per_member.index[(per_member["overlap"] >= 30) & (per_member["benzos"] >= 2)]
    hit = both[both["member_id"].isin(flagged)]
    out["RULE-RX-004"] = set(hit["claim_id"]) | set(hit["claim_id_o"])

    out["RULE-RX-005"] = set(ids[r["quantity"] / r["days_supply"] > r["max_daily_quantity"]])
    illegal = ((r["dea_schedule"] == 2) & (r["refill_number"] > 0)) | (
        r["dea_schedule"].isin([3, 4]) & (r["refill_number"] > 5)
    )
    out["RULE-RX-006"] = set(ids[illegal])
    bad_prescriber = ((r["excluded"] == "true") & (r["exclusion_date"] <= r["fill_date"])) | (
        r["provider_type"] != "individual"
    )
    out["RULE-RX-007"] = set(ids[bad_prescriber])
    out["RULE-RX-008"] = set(ids[r["fill_date"] > r["date_of_death"]])

    per = r.groupby("pharmacy_id").agg(
        schedule2=("dea_schedule", lambda s: (s == 2).mean()),
        cost=("amount_billed", "sum"),
        members=("member_id", "nunique"),
    )
    z_share = robust_z(per["schedule2"])
    z_cost = robust_z(per["cost"] / per["members"])
    flagged = per.index[(z_share >= 3.5) | (z_cost >= 3.5)]
    out["RULE-RX-010"] = set(ids[r["pharmacy_id"].isin(flagged)])
    return out


def _early_refills(r: pd.DataFrame, v: dict[str, object]) -> set[str]:
    """Fills of a member and drug, in date order, each starting on the supply when the previous
    runs out (carry-over) or on its fill date; early below the schedule's elapsed share."""
    r = r.sort_values(["member_id", v["drug_key"], "fill_date", "claim_id"])
    group = r.groupby(["member_id", v["drug_key"]], sort=False).ngroup().to_numpy()
    day = (r["fill_date"] - pd.Timestamp("1970-01-01")).dt.days.to_numpy(dtype=np.float64)
    supply = r["days_supply"].to_numpy(dtype=np.float64)
    if v["carry_over"]:
        # runs_out[i] = max(runs_out[i-1], day[i]) + supply[i], unrolled with cumsum/cummax.
        supplied = pd.Series(supply).groupby(group).cumsum().to_numpy()
        start = pd.Series(day - (supplied - supply)).groupby(group).cummax().to_numpy()
        in_use_from = supplied + start - supply
    else:
        in_use_from = day
    later = np.flatnonzero(group[1:] == group[:-1]) + 1
    schedule = r["dea_schedule"].to_numpy()
    threshold = np.where(
        schedule == 2, 0.9, np.where((schedule >= 3) & (schedule <= 5), 0.85, 0.75)
    )
    share = (day[later] - in_use_from[later - 1]) / supply[later - 1]
    return set(r["claim_id"].to_numpy()[later[share < threshold[later]]])


def score(hits: dict[str, set[str]], labels: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Per rule (precision, recall) of the hits against labels.csv."""
    result = {}
    for rule, expected in labels.groupby("rule_id")["claim_id"]:
        truth = set(expected)
        found = hits.get(rule, set())
        correct = len(found & truth)
        result[rule] = (correct / len(found) if found else 0.0, correct / len(truth))
    return result
