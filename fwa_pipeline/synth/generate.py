"""``generate``: one contract-conformant batch with planted schemes and ground-truth labels.

Order matters: schemes first reserve their providers, members, deaths and exclusions; clean claims
are then generated around them (with a small surplus); row-level plants are added; clean claims are
trimmed to the exact requested count (making room for the plants provider by provider); levels and
modifiers are settled; duplicates are copied; everything is sorted by date and numbered; the
provider- and pharmacy-level labels are derived from the final rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fwa_pipeline.reference import (
    REFERENCE_FILES,
    RULE_IDS,
    default_reference_path,
    load_default_reference,
)
from fwa_pipeline.synth import defects, medical, pharmacy, schemes_medical, schemes_pharmacy
from fwa_pipeline.synth.common import ANCHOR_DATE, rng_for
from fwa_pipeline.synth.medical import CodeBook, build_templates
from fwa_pipeline.synth.pharmacy import DrugBook
from fwa_pipeline.synth.population import Members, Providers, make_members, make_providers
from fwa_pipeline.synth.writer import dates, ids, lookup, money, tenths, write_csv, write_frame

MEDICAL_SHARE = 0.65
SURPLUS = 1.08  # clean claims generated beyond the need, then trimmed to the exact count


@dataclass(frozen=True)
class Sizes:
    """Population and volume for a batch of ``claims`` claims."""

    claims: int
    medical: int
    pharmacy: int
    target: int  # labelled claims aimed at per rule
    members: int
    individuals: int
    organizations: int
    pharmacies: int

    @classmethod
    def for_claims(cls, claims: int) -> Sizes:
        medical = round(claims * MEDICAL_SHARE)
        rx = claims - medical
        return cls(
            claims=claims,
            medical=medical,
            pharmacy=rx,
            # 0.08% of claims per rule, but at least 40 once there are 10,000 claims.
            target=max(round(claims * 0.0008), min(40, max(3, round(claims * 0.004)))),
            members=max(2000, claims // 5),
            individuals=max(85, round(0.8 * medical / 110)),
            organizations=max(21, round(0.2 * medical / 250)),
            pharmacies=max(15, round(rx / 700)),
        )

    @property
    def lines_per_individual(self) -> float:
        return 0.8 * self.medical / self.individuals

    @property
    def lines_per_organization(self) -> float:
        return 0.2 * self.medical / self.organizations

    @property
    def fills_per_pharmacy(self) -> float:
        return self.pharmacy / self.pharmacies

    @property
    def id_width(self) -> int:
        return max(8, len(str(self.claims * 2)))


def generate(
    out_dir: Path, n_claims: int, seed: int, quality_defects: bool = False
) -> dict[str, object]:
    """Write members.csv, providers.csv, medical_claims.csv, pharmacy_claims.csv, the three
    reference files and labels.csv (``claim_id,rule_id``) into ``out_dir``; return a summary.

    The same (n_claims, seed) always gives byte-identical files; dates never pass the fixed
    anchor 2026-06-30. About 65% of the claims are medical lines, 35% pharmacy fills, exactly
    n_claims in all from about 1,000 claims up (smaller batches cannot hold every scheme and come
    out somewhat larger). With ``quality_defects`` about 0.1% extra claim rows that break the
    data contract are appended (unlabelled; leave them out when scoring rules against labels).
    """
    if n_claims < 1:
        raise ValueError("n_claims must be positive")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = Sizes.for_claims(n_claims)
    reference = load_default_reference()
    members = make_members(sizes.members, rng_for(seed, "members"))
    providers = make_providers(
        sizes.individuals, sizes.organizations, sizes.pharmacies, rng_for(seed, "providers")
    )
    taken = np.zeros(len(members), dtype=bool)
    med_roles = schemes_medical.reserve(
        members,
        providers,
        sizes.target,
        sizes.lines_per_individual,
        taken,
        rng_for(seed, "medical-roles"),
    )
    rx_roles = schemes_pharmacy.reserve(
        members,
        providers,
        sizes.target,
        sizes.fills_per_pharmacy,
        taken,
        rng_for(seed, "pharmacy-roles"),
    )
    book = CodeBook(reference["cpt_reference"])
    drugs = DrugBook(reference["ndc_reference"])
    med, med_labels, dx_vocab = _medical(
        members, providers, med_roles, book, reference["ncci_edits"], sizes, seed
    )
    rx, rx_labels = _pharmacy(members, providers, rx_roles, taken, drugs, sizes, seed)

    member_ids = ids("MBR", len(members), 8)
    med_table = _medical_table(med, member_ids, providers, book, dx_vocab, sizes.id_width)
    rx_table = _pharmacy_table(rx, member_ids, providers, drugs, sizes.id_width)
    labels = _labels_table(med_table, med_labels, rx_table, rx_labels)

    defect_counts: dict[str, dict[str, int]] = {}
    if quality_defects:
        defect_rng = rng_for(seed, "defects")
        med_table, defect_counts["medical_claims.csv"] = defects.add_defects(
            med_table, "service_date", "provider_id", "M", sizes.id_width, defect_rng
        )
        rx_table, defect_counts["pharmacy_claims.csv"] = defects.add_defects(
            rx_table, "fill_date", "prescriber_id", "R", sizes.id_width, defect_rng
        )

    write_csv(med_table, out_dir / "medical_claims.csv")
    write_csv(rx_table, out_dir / "pharmacy_claims.csv")
    write_csv(_members_table(members, member_ids), out_dir / "members.csv")
    write_frame(_providers_frame(providers), out_dir / "providers.csv")
    write_csv(labels, out_dir / "labels.csv")
    for name in REFERENCE_FILES:
        with default_reference_path(name).open("rb") as src:
            (out_dir / f"{name}.csv").write_bytes(src.read())

    rules = labels["rule_id"].to_pandas().value_counts()
    return {
        "out_dir": str(out_dir),
        "seed": seed,
        "anchor_date": ANCHOR_DATE.isoformat(),
        "files": {
            "members.csv": len(members),
            "providers.csv": len(providers),
            "medical_claims.csv": med_table.num_rows,
            "pharmacy_claims.csv": rx_table.num_rows,
            **{f"{name}.csv": len(reference[name]) for name in REFERENCE_FILES},
            "labels.csv": labels.num_rows,
        },
        "planted_claims": {rule: int(rules.get(rule, 0)) for rule in RULE_IDS},
        "labelled_claims": len(pc.unique(labels["claim_id"])),
        "quality_defects": defect_counts,
    }


def _medical_table(
    med: pd.DataFrame,
    member_ids: pa.Array,
    providers: Providers,
    book: CodeBook,
    dx_vocab: np.ndarray,
    width: int,
) -> pa.Table:
    return pa.table(
        {
            "claim_id": ids("M", len(med), width),
            "member_id": member_ids.take(pa.array(med["member"].to_numpy())),
            "provider_id": providers.npi[med["provider"].to_numpy()],
            "service_date": dates(med["day"].to_numpy()),
            "cpt_code": book.codes[med["cpt"].to_numpy()],
            "modifier": lookup(np.array(medical.MODIFIERS), med["modifier"].to_numpy()),
            "diagnosis_code": lookup(dx_vocab, med["dx"].to_numpy()),
            "units": med["units"].to_numpy(dtype=np.int64),
            "place_of_service": lookup(np.array(medical.POS_CODES), med["pos"].to_numpy()),
            "amount_billed": money(med["billed"].to_numpy()),
            "amount_paid": money(med["paid"].to_numpy()),
        }
    )


def _pharmacy_table(
    rx: pd.DataFrame, member_ids: pa.Array, providers: Providers, drugs: DrugBook, width: int
) -> pa.Table:
    return pa.table(
        {
            "claim_id": ids("R", len(rx), width),
            "member_id": member_ids.take(pa.array(rx["member"].to_numpy())),
            "prescriber_id": providers.npi[rx["prescriber"].to_numpy()],
            "pharmacy_id": providers.npi[rx["pharmacy"].to_numpy()],
            "fill_date": dates(rx["day"].to_numpy()),
            "ndc_code": drugs.codes[rx["ndc"].to_numpy()],
            "quantity": tenths(rx["quantity"].to_numpy()),
            "days_supply": rx["days_supply"].to_numpy(dtype=np.int64),
            "refill_number": rx["refill"].to_numpy(dtype=np.int64),
            "amount_billed": money(rx["billed"].to_numpy()),
            "amount_paid": money(rx["paid"].to_numpy()),
        }
    )


def _labels_table(
    med_table: pa.Table, med_labels: pd.DataFrame, rx_table: pa.Table, rx_labels: pd.DataFrame
) -> pa.Table:
    """(claim_id, rule_id) rows, each pair once, sorted."""
    parts = []
    for table, labels in ((med_table, med_labels), (rx_table, rx_labels)):
        labels = labels.drop_duplicates()
        parts.append(
            pa.table(
                {
                    "claim_id": table["claim_id"].take(pa.array(labels["row"].to_numpy())),
                    "rule_id": pa.array(labels["rule"].to_numpy(dtype=str)),
                }
            )
        )
    return pa.concat_tables(parts).sort_by([("claim_id", "ascending"), ("rule_id", "ascending")])


def _medical(
    members: Members,
    providers: Providers,
    roles: schemes_medical.MedicalRoles,
    book: CodeBook,
    ncci: pd.DataFrame,
    sizes: Sizes,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Final medical lines (sorted, in claim-id order) and their labels (row, rule)."""
    rng = rng_for(seed, "medical")
    table = build_templates(book)
    need = sizes.medical - schemes_medical.planted_lines(sizes.target, len(roles.impossible_day))
    plan = schemes_medical.provider_plan(
        providers,
        roles,
        sizes.lines_per_individual,
        sizes.lines_per_organization,
        SURPLUS * need,
        table,
        rng,
    )
    clean = medical.clean_lines(members, providers, plan, book, table, rng)
    planter = schemes_medical.Planter(clean, members, providers, roles, plan, book, table, rng)
    planted, extra = schemes_medical.plant(planter, ncci, sizes.target)
    clean = medical.trim(clean, sizes.medical - len(planted) - sizes.target, extra)
    lines = pd.concat(
        [clean.assign(label="", fixed=False, clean=True), planted.assign(clean=False)],
        ignore_index=True,
    )
    lines = medical.finalize(lines, plan, book, rng)
    copies = schemes_medical.duplicates(lines[lines["clean"]], roles, book, sizes.target, rng)
    lines = pd.concat([lines.assign(copy=np.int8(0)), copies], ignore_index=True)
    order = np.lexsort(
        (
            lines["copy"].to_numpy(),
            lines["slot"].to_numpy(),
            lines["key"].to_numpy(),
            lines["day"].to_numpy(),
        )
    )
    lines = lines.iloc[order].reset_index(drop=True)
    labels = pd.concat(
        [
            _row_labels(lines),
            schemes_medical.aggregate_labels(lines, roles, book, providers.exclusion_day),
        ],
        ignore_index=True,
    )
    return lines, labels, table.dx_vocab


def _pharmacy(
    members: Members,
    providers: Providers,
    roles: schemes_pharmacy.PharmacyRoles,
    taken: np.ndarray,
    drugs: DrugBook,
    sizes: Sizes,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Final pharmacy fills (sorted, in claim-id order) and their labels (row, rule)."""
    rng = rng_for(seed, "pharmacy")
    plan = schemes_pharmacy.pharmacy_plan(providers, roles, rng)
    excluded = np.flatnonzero(providers.excluded & (providers.provider_type == "individual"))
    planter = schemes_pharmacy.RxPlanter(members, providers, roles, excluded, drugs, plan, rng)
    planted = schemes_pharmacy.plant(planter, sizes.target)
    need = max(sizes.pharmacy - len(planted) - sizes.target, 0)
    clean = clean_fills(members, providers, ~taken, drugs, plan, need, rng)
    clean["key"] = rng.random(len(clean))
    copies = schemes_pharmacy.duplicates(clean, drugs, sizes.target, rng)
    planted["key"] = rng.random(len(planted))
    fills = pd.concat([clean.assign(copy=np.int8(0), label=""), planted, copies], ignore_index=True)
    fills["copy"] = fills["copy"].fillna(0).astype(np.int8)
    order = np.lexsort((fills["copy"].to_numpy(), fills["key"].to_numpy(), fills["day"].to_numpy()))
    fills = fills.iloc[order].reset_index(drop=True)
    labels = pd.concat(
        [_row_labels(fills), schemes_pharmacy.aggregate_labels(fills, roles)], ignore_index=True
    )
    return fills, labels


def clean_fills(
    members: Members,
    providers: Providers,
    candidates: np.ndarray,
    drugs: DrugBook,
    plan: pharmacy.PharmacyPlan,
    need: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Exactly ``need`` clean fills (fewer only if every candidate member is used up)."""
    pool = rng.permutation(np.flatnonzero(candidates))
    parts: list[pd.DataFrame] = []
    have, used, chain_offset = 0, 0, 0
    while not parts or (have < need * SURPLUS and used < len(pool)):
        # About 3.5 fills per member on medication; draw in chunks until there is enough.
        chunk = pool[used : used + max(1000, int((need * SURPLUS - have) / 3))]
        used += len(chunk)
        chains = pharmacy.draw_chains(chunk, members, drugs, rng)
        minor = members.age_at_start()[chains["member"].to_numpy()] < 18
        use = drugs.use[chains["ndc"].to_numpy()]
        chains["prescriber"] = pharmacy.pick_prescribers(use, minor, providers, rng)
        fills = pharmacy.expand_fills(chains, members, drugs, rng)
        fills["prescriber"] = chains["prescriber"].to_numpy()[fills["chain"].to_numpy()]
        fills["chain"] += chain_offset
        chain_offset += len(chains)
        parts.append(fills)
        have += len(fills)
    fills = pharmacy.select_members(pd.concat(parts, ignore_index=True), need, rng)
    fills["pharmacy"] = pharmacy.deal_pharmacies(fills, drugs, plan, rng)
    fills["billed"], fills["paid"] = pharmacy.price_fills(
        fills["ndc"].to_numpy(),
        fills["quantity"].to_numpy(),
        fills["pharmacy"].to_numpy(),
        drugs,
        plan,
        rng,
    )
    return fills


def _row_labels(frame: pd.DataFrame) -> pd.DataFrame:
    label = frame["label"].to_numpy(dtype=object)
    rows = np.flatnonzero(label != "")
    return pd.DataFrame({"row": rows, "rule": label[rows].astype(str)})


def _members_table(members: Members, member_ids: pa.Array) -> pa.Table:
    return pa.table(
        {
            "member_id": member_ids,
            "first_name": members.first_name,
            "last_name": members.last_name,
            "date_of_birth": dates(members.dob),
            "gender": members.gender,
            "state": members.state,
            "date_of_death": dates(members.dod),
        }
    )


def _providers_frame(providers: Providers) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "provider_id": providers.npi,
            "name": providers.name,
            "provider_type": providers.provider_type,
            "specialty": providers.specialty_name(),
            "state": providers.state,
            "excluded": np.where(providers.excluded, "true", "false"),
            "exclusion_date": dates(providers.exclusion_day).to_pandas(),
        }
    )
