"""Planted pharmacy schemes (RULE-RX-001..010) and their labels.

Every planted fill belongs to a member set aside for it (no clean prescriptions), so a scheme never
mixes with a clean chain; within a scheme the fills are shaped to trip only their own rule: early
refills use non-opioids (overlapping opioid supplies would also raise MME), shoppers space their
fills past each days supply, high-dose members take one opioid at a time, and so on. Plant units go
to the ordinary pharmacies the way clean fills do (by volume and schedule II appetite), so no
pharmacy's statistics move by chance. The pharmacy outliers (RULE-RX-010) are set before clean fills
are dealt; their labels are every fill they dispensed in the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fwa_pipeline.synth import catalog
from fwa_pipeline.synth.common import ANCHOR, WINDOW_START, stratified
from fwa_pipeline.synth.pharmacy import (
    USE,
    DrugBook,
    PharmacyPlan,
    deal,
    pick_prescribers,
    price_fills,
)
from fwa_pipeline.synth.population import NO_DAY, Members, Providers

# The schedule II outlier takes 8x its share of schedule II fills and half its share of the
# others (about half its fills are then schedule II); the cost outlier bills 4x the usual price.
OUTLIER_SCHEDULE2_APPETITE = 8.0
OUTLIER_OTHER_VOLUME = 0.5
OUTLIER_MARKUP = 4.0
DAYS = 30  # days supply of planted chronic fills

# (ndc, per-day units) of the high-dose regimens: 120-180 MME a day.
HIGH_DOSE = (
    ("00406055501", 4.0),
    ("00406055401", 6.0),
    ("42858080301", 2.0),
    ("00406324501", 4.0),
    ("00781724255", 1 / 3),
    ("00781724355", 1 / 3),
    ("00054457125", 3.0),
)
# Low-dose opioid regimens (18-30 MME a day) used where a scheme needs an opioid.
LOW_DOSE = (("00591085305", 3.0), ("57664037788", 3.0), ("00093015001", 4.0))
BENZOS = (("00228202710", 2.0), ("00093083201", 2.0), ("00591024101", 2.0), ("00591562101", 2.0))
# Shoppers collect schedule III-IV opioids (tramadol, codeine): shopping needs any controlled
# drug, and these add no schedule II fills to the pharmacies they visit.
SHOPPED = (("57664037788", 4.0), ("00093015001", 4.0))
SCHEDULE2_REFILLED = (("00555097402", 1.0), ("00591271801", 1.0))
SCHEDULE34_REFILLED = (
    ("00228202710", 2.0),
    ("00093007301", 1.0),
    ("00093015001", 4.0),
    ("00591024101", 2.0),
)


@dataclass
class PharmacyRoles:
    """Members and pharmacies set aside for schemes (positions in Members / Providers)."""

    fresh: np.ndarray  # members whose only fills are planted
    dead: np.ndarray  # members filling after death (RULE-RX-008)
    schedule2_outliers: np.ndarray  # pharmacies
    cost_outliers: np.ndarray

    @property
    def outliers(self) -> np.ndarray:
        return np.concatenate([self.schedule2_outliers, self.cost_outliers])


def unit_counts(target: int) -> dict[str, int]:
    """Plant units per scheme: enough that each rule gets about ``target`` labelled fills."""
    near = max(2, target // 10)
    return {
        "early": -(-target * 2 // 5),
        "shopping": -(-target // 7),
        "high_dose": -(-target // 3),
        "high_dose_near": near,
        "benzo": -(-target // 6),
        "benzo_near": near,
        "quantity": target,
        "quantity_near": near,
        "refill": -(-target // 2),
        "prescriber": target,
        "prescriber_near": near,
    }


def reserve(
    members: Members,
    providers: Providers,
    target: int,
    fills_per_pharmacy: float,
    member_taken: np.ndarray,
    rng: np.random.Generator,
) -> PharmacyRoles:
    """Set aside plant members (adults with no clean prescriptions), the members who keep
    filling after death (their deaths are set here), and one or more outlier pharmacies of each
    kind."""
    age = members.age_at_start()
    adults = (age >= 25) & (age <= 75) & (members.dod == NO_DAY)
    pool = rng.permutation(np.flatnonzero(adults & ~member_taken))
    n_fresh = sum(unit_counts(target).values())
    n_dead = -(-target // 2)
    fresh, dead = pool[:n_fresh], pool[n_fresh : n_fresh + n_dead]
    member_taken[fresh] = True
    member_taken[dead] = True
    members.dod[dead] = rng.integers(WINDOW_START + 240, ANCHOR - 90, len(dead))
    pharmacies = rng.permutation(np.flatnonzero(providers.provider_type == "pharmacy"))
    k = max(1, -(-target // int(2 * fills_per_pharmacy)))
    return PharmacyRoles(fresh, dead, pharmacies[:k], pharmacies[k : 2 * k])


def pharmacy_plan(
    providers: Providers, roles: PharmacyRoles, rng: np.random.Generator
) -> PharmacyPlan:
    """Evenly spread clean knobs, then the outliers' overrides."""
    kind = (providers.provider_type == "pharmacy").astype(np.int64)
    plan = PharmacyPlan(
        volume=rng.uniform(0.6, 1.4, len(providers)),
        schedule2_appetite=stratified(kind, 0.4, 1.6, rng),
        markup=stratified(kind, 0.6, 1.4, rng),
        is_pharmacy=kind == 1,
    )
    plan.schedule2_appetite[roles.schedule2_outliers] = (
        OUTLIER_SCHEDULE2_APPETITE / OUTLIER_OTHER_VOLUME
    )
    plan.volume[roles.schedule2_outliers] *= OUTLIER_OTHER_VOLUME
    plan.markup[roles.cost_outliers] = OUTLIER_MARKUP
    return plan


class RxPlanter:
    """Collects plant units (one member's planted fills each) as rows."""

    def __init__(
        self,
        members: Members,
        providers: Providers,
        roles: PharmacyRoles,
        excluded: np.ndarray,
        book: DrugBook,
        plan: PharmacyPlan,
        rng: np.random.Generator,
    ) -> None:
        self.members, self.providers, self.roles = members, providers, roles
        self.excluded, self.book, self.plan, self.rng = excluded, book, plan, rng
        self.fresh = list(roles.fresh)
        self.units: list[pd.DataFrame] = []
        self.pharmacies = np.setdiff1d(
            np.flatnonzero(providers.provider_type == "pharmacy"), roles.outliers
        )

    def take_members(self, k: int) -> np.ndarray:
        taken, self.fresh = self.fresh[:k], self.fresh[k:]
        return np.array(taken, dtype=np.int64)

    def regimen(
        self, options: tuple[tuple[str, float], ...], k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """k (ndc, per-day) draws from a tuple of regimens, cycling so each is used."""
        which = self.rng.permutation(np.arange(k) % len(options))
        ndc = np.array([self.book[code] for code, _ in options])
        per_day = np.array([amount for _, amount in options])
        return ndc[which], per_day[which]

    def unlabelled_fills(
        self, member: np.ndarray, ndc_code: str, days_supply: int, per_day: float, days: np.ndarray
    ) -> None:
        """Near misses: member[i]'s fills of one drug on days[i, :], at one supply and daily
        amount, none of them labelled."""
        n, f = days.shape
        self.chain(
            member,
            np.full(n, self.book[ndc_code]),
            np.full(n, days_supply),
            np.full(n, per_day),
            days,
            _labels(n, [""] * f),
        )

    def chain(
        self,
        member: np.ndarray,
        ndc: np.ndarray,
        days_supply: np.ndarray,
        per_day: np.ndarray,
        days: np.ndarray,
        labels: np.ndarray,
        refill: np.ndarray | None = None,
        prescriber: np.ndarray | None = None,
        pharmacy: np.ndarray | None = None,
    ) -> None:
        """Add units: row i is member[i]'s fills on days[i, :]."""
        n, f = days.shape
        unit = np.repeat(np.arange(n), f)
        position = np.tile(np.arange(f), (n, 1))
        if refill is None:
            refill = self.book.refill_numbers(np.repeat(ndc, f).reshape(n, f), position)
        if prescriber is None:
            use = self.book.use[ndc]
            prescriber = pick_prescribers(use, np.zeros(n, bool), self.providers, self.rng)
        prescriber = np.broadcast_to(
            prescriber[:, None] if prescriber.ndim == 1 else prescriber, (n, f)
        )
        frame = pd.DataFrame(
            {
                "unit": unit,
                "member": member[unit],
                "prescriber": prescriber.ravel(),
                "day": days.ravel(),
                "ndc": ndc[unit],
                "quantity": np.round(per_day * days_supply, 1)[unit],
                "days_supply": days_supply[unit],
                "refill": np.broadcast_to(refill, (n, f)).ravel(),
                "label": np.broadcast_to(labels, (n, f)).ravel(),
            }
        )
        if pharmacy is not None:
            frame["pharmacy"] = np.broadcast_to(pharmacy, (n, f)).ravel()
        self.units.append(frame)

    def spaced_days(self, n: int, gaps: np.ndarray, days_supply: np.ndarray) -> np.ndarray:
        """Fill days for n chains: ``gaps`` (n, f-1) are fractions of days supply between fills
        (rounded up); each chain starts at a random day leaving room before the anchor."""
        steps = np.ceil(gaps * days_supply[:, None]).astype(np.int64)
        offsets = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(steps, axis=1)], axis=1)
        start = self.rng.integers(WINDOW_START, ANCHOR - offsets[:, -1] + 1)
        return start[:, None] + offsets

    def finish(self) -> pd.DataFrame:
        """All planted fills with a pharmacy and prices."""
        frames = []
        offset = 0
        for frame in self.units:
            frames.append(frame.assign(unit=frame["unit"] + offset))
            offset += int(frame["unit"].max()) + 1
        fills = pd.concat(frames, ignore_index=True)
        if "pharmacy" not in fills:
            fills["pharmacy"] = -1
        fills["pharmacy"] = fills["pharmacy"].fillna(-1).astype(np.int64)
        # Units go where clean ones would: in proportion to each pharmacy's volume and, for
        # schedule II, its appetite, so plants never blur the pharmacies' planned differences.
        open_rows = fills["pharmacy"].to_numpy() < 0
        unit = fills["unit"].to_numpy()
        per_unit = (
            pd.DataFrame(
                {
                    "schedule2": self.book.schedule[fills["ndc"].to_numpy()] == 2,
                    "cost": self.book.base_cost(
                        fills["ndc"].to_numpy(), fills["quantity"].to_numpy()
                    ),
                }
            )[open_rows]
            .groupby(unit[open_rows])
            .sum()
        )
        home = deal(
            per_unit["schedule2"].to_numpy(),
            per_unit["cost"].to_numpy(),
            self.pharmacies,
            self.plan,
            self.rng,
        )
        fills.loc[open_rows, "pharmacy"] = (
            pd.Series(home, index=per_unit.index).loc[unit[open_rows]].to_numpy()
        )
        billed, paid = price_fills(
            fills["ndc"].to_numpy(),
            fills["quantity"].to_numpy(),
            fills["pharmacy"].to_numpy(),
            self.book,
            self.plan,
            self.rng,
        )
        return fills.assign(billed=billed, paid=paid)


def plant(p: RxPlanter, target: int) -> pd.DataFrame:
    """All planted fills except duplicates (which copy clean fills, see :func:`duplicates`)."""
    counts = unit_counts(target)
    _early_refills(p, counts["early"])
    _shopping(p, counts["shopping"])
    _high_dose(p, counts["high_dose"], counts["high_dose_near"])
    _opioid_benzo(p, counts["benzo"], counts["benzo_near"])
    _quantity(p, counts["quantity"], counts["quantity_near"])
    _illegal_refills(p, counts["refill"])
    _prescribers(p, counts["prescriber"], counts["prescriber_near"])
    _after_death(p)
    return p.finish()


def _labels(n: int, pattern: list[str]) -> np.ndarray:
    return np.tile(np.array(pattern, dtype=object), (n, 1))


def _early_refills(p: RxPlanter, n: int) -> None:
    """RULE-RX-001: one or two on-time fills, then two or three refills after 45-60% of the
    supply (early under every schedule's threshold, with or without carry-over). The chain ends
    there, so no later fill inherits the stockpile. Non-opioid drugs only."""
    member = p.take_members(n)
    eligible = np.flatnonzero(
        np.isin(p.book.use, [USE["maintenance"], USE["benzo"], USE["stimulant"]])
        & (p.book.weight > 0)
        & p.book.chronic
    )
    ndc = p.rng.choice(eligible, size=n)
    per_day = p.book.per_day.first(ndc)
    early = np.arange(n) % 2 == 1  # half the chains: N N E E, the others: N E E E
    on_time = p.rng.uniform(1.0, 1.1, (n, 3))
    soon = p.rng.uniform(0.45, 0.6, (n, 3))
    gaps = np.where(np.array([False, True, True])[None, :] | early[:, None], soon, on_time)
    days = p.spaced_days(n, gaps, np.full(n, DAYS))
    labels = np.where(
        early[:, None],
        _labels(n, ["", "RULE-RX-001", "RULE-RX-001", "RULE-RX-001"]),
        _labels(n, ["", "", "RULE-RX-001", "RULE-RX-001"]),
    )
    p.chain(member, ndc, np.full(n, DAYS), per_day, days, labels)


def _shopping(p: RxPlanter, n: int) -> None:
    """RULE-RX-002: seven short opioid fills within about four months, each from a different
    prescriber and pharmacy, spaced beyond each 10-day supply (not early, never overlapping)."""
    fills = 7
    member = p.take_members(n)
    ndc, per_day = p.regimen(SHOPPED, n)
    days = p.spaced_days(n, p.rng.uniform(1.4, 2.0, (n, fills - 1)), np.full(n, 10))
    writers = p.rng.permutation(
        np.setdiff1d(p.providers.of_specialty(*catalog.PRESCRIBERS_BY_USE["opioid"]), p.excluded)
    )
    # Consecutive positions in a shuffled list: distinct within a member, even across members.
    grid = np.arange(n)[:, None] * fills + np.arange(fills)[None, :]
    prescriber = writers[grid % len(writers)]
    pharmacy = p.rng.permutation(p.pharmacies)[grid % len(p.pharmacies)]
    p.chain(
        member,
        ndc,
        np.full(n, 10),
        per_day,
        days,
        _labels(n, ["RULE-RX-002"] * fills),
        prescriber=prescriber,
        pharmacy=pharmacy,
    )


def _high_dose(p: RxPlanter, n: int, near: int) -> None:
    """RULE-RX-003: three monthly fills at 120-180 MME a day. Near misses: one week at exactly
    90 MME, or two months at 75 MME (unlabelled)."""
    member = p.take_members(n)
    ndc, per_day = p.regimen(HIGH_DOSE, n)
    days = p.spaced_days(n, p.rng.uniform(1.0, 1.1, (n, 2)), np.full(n, DAYS))
    p.chain(member, ndc, np.full(n, DAYS), per_day, days, _labels(n, ["RULE-RX-003"] * 3))
    week = near // 2
    member = p.take_members(week)
    days = p.spaced_days(week, np.zeros((week, 0)), np.full(week, 7))
    p.unlabelled_fills(member, "00406055301", 7, 6.0, days)
    rest = near - week
    member = p.take_members(rest)
    days = p.spaced_days(rest, p.rng.uniform(1.0, 1.1, (rest, 1)), np.full(rest, DAYS))
    p.unlabelled_fills(member, "00406052305", DAYS, 5.0, days)


def _opioid_benzo(p: RxPlanter, n: int, near: int) -> None:
    """RULE-RX-004: three monthly low-dose opioid fills and three benzodiazepine fills started
    0-5 days later: every fill overlaps the other drug for about 25-30 days. Near misses: a
    benzodiazepine chain with one 5-day opioid fill (5 days of overlap, unlabelled)."""
    member = p.take_members(n)
    opioid, opioid_per_day = p.regimen(LOW_DOSE, n)
    benzo, benzo_per_day = p.regimen(BENZOS, n)
    days = p.spaced_days(n, p.rng.uniform(1.0, 1.05, (n, 2)), np.full(n, DAYS))
    shift = p.rng.integers(0, 6, n)[:, None]
    benzo_days = (
        days
        + shift
        + np.cumsum(np.c_[np.zeros(n, np.int64), p.rng.integers(-1, 2, (n, 2))], axis=1)
    )
    benzo_days = np.minimum(benzo_days, ANCHOR)
    labels = _labels(n, ["RULE-RX-004"] * 3)
    prescriber = pick_prescribers(np.full(n, USE["benzo"]), np.zeros(n, bool), p.providers, p.rng)
    p.chain(member, opioid, np.full(n, DAYS), opioid_per_day, days, labels)
    p.chain(
        member, benzo, np.full(n, DAYS), benzo_per_day, benzo_days, labels, prescriber=prescriber
    )
    member = p.take_members(near)
    benzo, benzo_per_day = p.regimen(BENZOS, near)
    days = p.spaced_days(near, p.rng.uniform(1.0, 1.05, (near, 2)), np.full(near, DAYS))
    p.chain(member, benzo, np.full(near, DAYS), benzo_per_day, days, _labels(near, [""] * 3))
    acute = (days[:, 1] + p.rng.integers(0, 10, near))[:, None]
    p.unlabelled_fills(member, "00591085105", 5, 4.0, acute)


def _quantity(p: RxPlanter, n: int, near: int) -> None:
    """RULE-RX-005: a non-controlled fill one unit a day over max_daily_quantity. Near misses:
    exactly at the limit (unlabelled)."""
    eligible = np.flatnonzero(
        (p.book.schedule == 0)
        & np.isfinite(p.book.max_daily)
        & (p.book.max_daily >= 1)
        & np.isin(p.book.use, [USE["maintenance"], USE["acute"]])
    )
    for count, extra, label in ((n, 1.0, "RULE-RX-005"), (near, 0.0, "")):
        member = p.take_members(count)
        ndc = p.rng.choice(eligible, size=count)
        days_supply = p.book.days_supply.first(ndc).astype(np.int64)
        per_day = p.book.max_daily[ndc] + extra
        days = p.spaced_days(count, np.zeros((count, 0)), days_supply)
        p.chain(member, ndc, days_supply, per_day, days, _labels(count, [label]))


def _illegal_refills(p: RxPlanter, n: int) -> None:
    """RULE-RX-006: schedule II refilled (refill numbers 0, 1, 2) or schedule III-IV refilled
    past five (5, 6, 7); the fills with an illegal number are the hits."""
    half = n // 2
    for count, regimens, numbers in (
        (half, SCHEDULE2_REFILLED, [0, 1, 2]),
        (n - half, SCHEDULE34_REFILLED, [5, 6, 7]),
    ):
        member = p.take_members(count)
        ndc, per_day = p.regimen(regimens, count)
        days = p.spaced_days(count, p.rng.uniform(1.0, 1.1, (count, 2)), np.full(count, DAYS))
        p.chain(
            member,
            ndc,
            np.full(count, DAYS),
            per_day,
            days,
            _labels(count, ["", "RULE-RX-006", "RULE-RX-006"]),
            refill=np.tile(np.array(numbers), (count, 1)),
        )


def _prescribers(p: RxPlanter, n: int, near: int) -> None:
    """RULE-RX-007: a fill written by an excluded individual on or after the exclusion date, or
    by an organization or pharmacy NPI. Near misses: an excluded prescriber's fill dated before
    the exclusion (unlabelled)."""
    maintenance = np.flatnonzero((p.book.use == USE["maintenance"]) & (p.book.weight > 0))
    excluded_day = p.providers.exclusion_day
    by_excluded = n * 3 // 5
    writer = p.rng.choice(p.excluded, size=by_excluded)
    start = np.maximum(excluded_day[writer], WINDOW_START)
    day = start + (p.rng.random(by_excluded) * (ANCHOR - start)).astype(np.int64)
    not_individual = np.flatnonzero(p.providers.provider_type != "individual")
    others = p.rng.choice(not_individual, size=n - by_excluded)
    day = np.r_[day, p.rng.integers(WINDOW_START, ANCHOR + 1, n - by_excluded)]
    writer = np.r_[writer, others]
    within = p.excluded[excluded_day[p.excluded] > WINDOW_START + 60]
    early_writer = p.rng.choice(within, size=near)
    early_day = p.rng.integers(WINDOW_START, excluded_day[early_writer] - 5)
    for who, when, label in ((writer, day, "RULE-RX-007"), (early_writer, early_day, "")):
        count = len(who)
        member = p.take_members(count)
        ndc = p.rng.choice(maintenance, size=count)
        per_day = p.book.per_day.first(ndc)
        p.chain(
            member,
            ndc,
            np.full(count, DAYS),
            per_day,
            when[:, None],
            _labels(count, [label]),
            prescriber=who,
        )


def _after_death(p: RxPlanter) -> None:
    """RULE-RX-008: a monthly maintenance chain that keeps being filled after the member died:
    the first fill after death comes 1-20 days after it; the fills after death are the hits."""
    member = p.roles.dead
    n = len(member)
    dod = p.members.dod[member]
    after = np.arange(n) % 3 + 1  # fills after death: 1, 2 or 3 (two on average)
    # Monthly fills (31-34 days apart); column 4 - after is the first fill after death.
    offset = np.c_[np.zeros(n, np.int64), np.cumsum(p.rng.integers(31, 35, (n, 3)), axis=1)]
    first_after = dod + p.rng.integers(1, 21, n)
    days = first_after[:, None] + offset - offset[np.arange(n), 4 - after][:, None]
    maintenance = np.flatnonzero(
        (p.book.use == USE["maintenance"]) & (p.book.weight > 0) & (p.book.schedule == 0)
    )
    ndc = p.rng.choice(maintenance, size=n)
    per_day = p.book.per_day.first(ndc)
    labels = np.where(days > dod[:, None], "RULE-RX-008", "").astype(object)
    p.chain(member, ndc, np.full(n, DAYS), per_day, days, labels)


def duplicates(
    clean: pd.DataFrame, book: DrugBook, target: int, rng: np.random.Generator
) -> pd.DataFrame:
    """RULE-RX-009: exact resubmissions of clean non-controlled fills that end their chain (a
    copy mid-chain would double the supply on hand for every later refill). A tenth are billed
    three times."""
    eligible = np.flatnonzero(
        clean["last"].to_numpy() & (book.schedule[clean["ndc"].to_numpy()] == 0)
    )
    source = rng.choice(eligible, size=min(target - target // 10, len(eligible)), replace=False)
    thrice = min(target // 10, len(source))
    rows = np.r_[source, source[:thrice]]
    copies = clean.iloc[rows].copy()
    copies["copy"] = np.r_[np.ones(len(source)), np.full(thrice, 2)].astype(np.int8)
    copies["label"] = "RULE-RX-009"
    return copies


def aggregate_labels(fills: pd.DataFrame, roles: PharmacyRoles) -> pd.DataFrame:
    rows = np.flatnonzero(np.isin(fills["pharmacy"].to_numpy(), roles.outliers))
    return pd.DataFrame({"row": rows, "rule": "RULE-RX-010"})
