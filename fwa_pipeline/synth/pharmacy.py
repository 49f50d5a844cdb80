"""Clean pharmacy fills.

A member on medication has one to three refill chains, each of a different drug (one NDC per
ingredient), and at most one controlled-substance chain, so clean members never combine opioids
with benzodiazepines, never stack opioid doses and never have more than one controlled prescriber.
Refills come after the whole previous supply is used (100-112% of days supply), clean doses stay
within max_daily_quantity and well under 90 MME, schedule II fills are never refilled and schedule
III-V refill numbers restart after 5.

Stretches of chains are dealt to pharmacies along a golden-ratio sequence over their sorted cost,
weighted by each pharmacy's evenly spread volume and schedule II appetite: every pharmacy gets a
near-exact slice of the cost distribution, so cost per member and schedule II share differ between
pharmacies by design (a bounded spread) rather than by chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fwa_pipeline.synth import catalog
from fwa_pipeline.synth.common import ANCHOR, WINDOW_START, cents, weyl_positions
from fwa_pipeline.synth.population import NO_DAY, Members, Providers

USES = ("maintenance", "acute", "opioid", "benzo", "stimulant", "sedative")
USE = {u: i for i, u in enumerate(USES)}


class DrugBook:
    """The NDC reference as arrays indexed by NDC position, plus the generator's usage table."""

    def __init__(self, ndc: pd.DataFrame) -> None:
        self.codes = ndc["ndc_code"].to_numpy(dtype=str)
        self.index = {code: i for i, code in enumerate(self.codes)}
        # The ingredient, for "one chain per drug": the drug name's first word.
        self.family = np.array([n.split()[0].lower() for n in ndc["drug_name"].to_numpy(str)])
        self.schedule = ndc["dea_schedule"].fillna(0).to_numpy(dtype=np.int64)
        self.max_daily = ndc["max_daily_quantity"].fillna(np.inf).to_numpy(dtype=np.float64)
        self.uses = [catalog.DRUG_BY_NDC[code] for code in self.codes]
        self.use = np.array([USE[u.use] for u in self.uses])
        self.unit_price = np.array([u.unit_price for u in self.uses])
        self.min_age = np.array([u.min_age for u in self.uses])
        self.weight = np.array([u.weight if u.clean else 0.0 for u in self.uses])
        self.chronic = np.array([u.chronic for u in self.uses])
        self.days_supply = Options([u.days_supply for u in self.uses])
        self.per_day = Options([u.per_day for u in self.uses])
        self.ninety = np.array([u.days_supply == (30, 90) for u in self.uses])

    def __getitem__(self, code: str) -> int:
        return self.index[code]

    def base_cost(self, ndc: np.ndarray, quantity: np.ndarray) -> np.ndarray:
        """Dollars before the pharmacy's markup."""
        return self.unit_price[ndc] * quantity + catalog.DISPENSING_FEE

    def refill_numbers(self, ndc: np.ndarray, position: np.ndarray) -> np.ndarray:
        """Legal refill numbers for the position-th fill of a chain: a new prescription every
        fill for schedule II, after 5 refills for III-V, after 11 otherwise."""
        schedule = self.schedule[ndc]
        cycle = np.where(schedule == 2, 1, np.where(schedule >= 3, 6, 12))
        return position % cycle


@dataclass
class PharmacyPlan:
    """Per-provider pharmacy knobs (only pharmacies' entries matter)."""

    volume: np.ndarray  # relative share of fills
    schedule2_appetite: np.ndarray  # extra weight for schedule II fills
    markup: np.ndarray  # price factor on every fill
    is_pharmacy: np.ndarray


def draw_chains(
    members: np.ndarray, population: Members, book: DrugBook, rng: np.random.Generator
) -> pd.DataFrame:
    """Refill chains (member, ndc, days_supply, quantity, length, start day) for ``members``."""
    age = population.age_at_start()[members]
    n_chains = rng.choice(3, size=len(members), p=[0.45, 0.35, 0.20]) + 1
    owner = np.repeat(np.arange(len(members)), n_chains)
    first = np.r_[True, owner[1:] != owner[:-1]]
    a = age[owner]
    controlled_rate = np.where(a >= 18, 0.28, np.where(a >= 6, 0.10, 0.0))
    controlled = first & (rng.random(len(owner)) < controlled_rate)
    everyday = np.where(rng.random(len(owner)) < np.where(a >= 18, 0.72, 0.40), 0, 1)
    # Children on a controlled drug get a stimulant; adults any controlled use.
    adult = rng.choice(
        [USE["opioid"], USE["benzo"], USE["stimulant"], USE["sedative"]],
        size=len(owner),
        p=[0.45, 0.25, 0.15, 0.15],
    )
    use = np.where(controlled, np.where(a >= 18, adult, USE["stimulant"]), everyday)
    ndc = pick_ndc(use, a, book, rng)
    # One NDC per ingredient per member: a second chain of the same drug would look like an
    # early refill.
    keep = ~pd.DataFrame({"m": owner, "f": book.family[ndc]}).duplicated().to_numpy()
    chains = pd.DataFrame({"member": members[owner][keep], "ndc": ndc[keep]})
    return shape_chains(chains, book, rng)


def pick_ndc(
    use: np.ndarray, age: np.ndarray, book: DrugBook, rng: np.random.Generator
) -> np.ndarray:
    """A weighted clean NDC of each chain's use that the member is old enough for."""
    ndc = np.zeros(len(use), dtype=np.int64)
    draw = rng.random(len(use))
    for k in range(len(USES)):
        rows = np.flatnonzero(use == k)
        ids = np.flatnonzero((book.use == k) & (book.weight > 0))
        weights = np.cumsum((book.min_age[ids][None, :] <= age[rows, None]) * book.weight[ids], 1)
        pick = (weights <= (draw[rows] * weights[:, -1])[:, None]).sum(axis=1)
        ndc[rows] = ids[np.minimum(pick, len(ids) - 1)]
    return ndc


def shape_chains(chains: pd.DataFrame, book: DrugBook, rng: np.random.Generator) -> pd.DataFrame:
    n = len(chains)
    ndc = chains["ndc"].to_numpy()
    days_supply = book.days_supply.pick(ndc, rng.random(n)).astype(np.int64)
    # Drugs offering 30 or 90 days use 90 for 30% of chains: common enough that 90-day fills
    # are not amount outliers for their NDC.
    days_supply = np.where(book.ninety[ndc], np.where(rng.random(n) < 0.3, 90, 30), days_supply)
    per_day = book.per_day.pick(ndc, rng.random(n))
    controlled = book.schedule[ndc] > 0
    cap = np.where(controlled, 11, 23)  # two years of monthly fills at most
    length = np.where(
        book.chronic[ndc], 1 + np.minimum(rng.geometric(np.where(controlled, 0.2, 0.12)), cap), 1
    )
    return chains.assign(
        days_supply=days_supply,
        quantity=np.round(per_day * days_supply, 1),
        length=length,
        start=rng.integers(WINDOW_START, ANCHOR + 1, n),
    )


class Options:
    """Per-NDC tuples of options as a padded table, for vectorised picks."""

    def __init__(self, options: list[tuple[float, ...]]) -> None:
        width = max(len(o) for o in options)
        self.table = np.array([[*o, *[o[-1]] * (width - len(o))] for o in options], np.float64)
        self.count = np.array([len(o) for o in options])

    def pick(self, ndc: np.ndarray, draw: np.ndarray) -> np.ndarray:
        """One option per row, uniformly among that NDC's options."""
        index = np.minimum((draw * self.count[ndc]).astype(np.int64), self.count[ndc] - 1)
        return self.table[ndc, index]

    def first(self, ndc: np.ndarray) -> np.ndarray:
        return self.table[ndc, 0]


def expand_fills(
    chains: pd.DataFrame,
    population: Members,
    book: DrugBook,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One row per fill: each refill 100-112% of the days supply after the previous (rounded up,
    so never early), none after the anchor or on/after the member's death."""
    length = chains["length"].to_numpy()
    chain = np.repeat(np.arange(len(chains)), length)
    position = np.arange(len(chain)) - np.repeat(np.r_[0, np.cumsum(length)[:-1]], length)
    days_supply = chains["days_supply"].to_numpy()[chain]
    gap = np.ceil(days_supply * rng.uniform(1.0, 1.12, len(chain))).astype(np.int64)
    gap[position == 0] = 0
    offset = np.cumsum(gap)
    offset -= np.repeat(offset[np.r_[0, np.cumsum(length)[:-1]]], length)
    day = chains["start"].to_numpy()[chain] + offset
    member = chains["member"].to_numpy()[chain]
    dod = population.dod[member]
    keep = (day <= ANCHOR) & ((dod == NO_DAY) | (day < dod))
    ndc = chains["ndc"].to_numpy()[chain]
    fills = pd.DataFrame(
        {
            "chain": chain,
            "position": position,
            "member": member,
            "day": day,
            "ndc": ndc,
            "quantity": chains["quantity"].to_numpy()[chain],
            "days_supply": days_supply,
            "refill": book.refill_numbers(ndc, position),
        }
    )[keep]
    last = fills["chain"].to_numpy()
    fills["last"] = np.r_[last[1:] != last[:-1], True]
    return fills.reset_index(drop=True)


def pick_prescribers(
    use: np.ndarray,
    minor: np.ndarray,
    providers: Providers,
    rng: np.random.Generator,
) -> np.ndarray:
    """A prescriber per row: a non-excluded individual of a specialty that writes that use."""
    result = np.zeros(len(use), dtype=np.int64)
    draw = rng.integers(0, 1 << 40, len(use))
    able = (providers.provider_type == "individual") & ~providers.excluded
    for k, name in enumerate(USES):
        for is_minor in (False, True):
            rows = np.flatnonzero((use == k) & (minor == is_minor))
            if len(rows) == 0:
                continue
            names = catalog.PRESCRIBERS_BY_USE[name]
            if is_minor:
                names = catalog.PEDIATRIC_PRESCRIBERS[name == "stimulant"]
            pool = np.intersect1d(providers.of_specialty(*names), np.flatnonzero(able))
            result[rows] = pool[draw[rows] % len(pool)]
    return result


def deal_pharmacies(
    fills: pd.DataFrame, book: DrugBook, plan: PharmacyPlan, rng: np.random.Generator
) -> np.ndarray:
    """A pharmacy per fill. The unit dealt is a stretch of a chain (members do change
    pharmacies): a few fills, so that no unit's cost or schedule II count is large next to a
    pharmacy's total. Whole members are too lumpy: one member on three long chains can outweigh
    forty others."""
    ndc = fills["ndc"].to_numpy()
    schedule = book.schedule[ndc]
    # Schedule II fills are few: dealt one by one, each pharmacy's count follows its appetite
    # closely. (A member's controlled fills keep one prescriber, so this never looks like
    # shopping.)
    stretch = np.select(
        [schedule == 2, schedule > 2, fills["days_supply"].to_numpy() >= 90], [1, 1 << 20, 2], 4
    )
    unit, _ = pd.factorize(
        pd.MultiIndex.from_arrays(
            [fills["chain"].to_numpy(), fills["position"].to_numpy() // stretch]
        )
    )
    per_unit = (
        pd.DataFrame(
            {
                "schedule2": schedule == 2,
                "cost": book.base_cost(ndc, fills["quantity"].to_numpy()),
            }
        )
        .groupby(unit)
        .agg(schedule2=("schedule2", "sum"), cost=("cost", "sum"))
    )
    pharmacies = np.flatnonzero(plan.is_pharmacy)
    home = deal(
        per_unit["schedule2"].to_numpy(), per_unit["cost"].to_numpy(), pharmacies, plan, rng
    )
    return home[unit]


def deal(
    schedule2: np.ndarray,
    cost: np.ndarray,
    pharmacies: np.ndarray,
    plan: PharmacyPlan,
    rng: np.random.Generator,
) -> np.ndarray:
    """A pharmacy per unit: units with schedule II fills in proportion to volume x schedule II
    appetite, the others to volume; largest first (schedule II fills, then cost), so consecutive
    golden-ratio positions spread each tier evenly over the pharmacies."""
    home = np.zeros(len(cost), dtype=np.int64)
    for on_schedule2 in (False, True):
        rows = np.flatnonzero((schedule2 > 0) == on_schedule2)
        rows = rows[np.lexsort((-cost[rows], -schedule2[rows]))]
        weight = plan.volume[pharmacies] * (
            plan.schedule2_appetite[pharmacies] if on_schedule2 else 1.0
        )
        edges = np.cumsum(weight) / weight.sum()
        slot = np.searchsorted(edges, weyl_positions(len(rows), rng), side="right")
        home[rows] = pharmacies[np.minimum(slot, len(pharmacies) - 1)]
    return home


def price_fills(
    ndc: np.ndarray,
    quantity: np.ndarray,
    pharmacy: np.ndarray,
    book: DrugBook,
    plan: PharmacyPlan,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(billed, paid) cents: cost x the pharmacy's markup within +-5%; the plan pays 70-92%."""
    billed = cents(
        book.base_cost(ndc, quantity) * plan.markup[pharmacy] * rng.uniform(0.95, 1.05, len(ndc))
    )
    paid = cents(billed / 100 * rng.uniform(0.70, 0.92, len(ndc)))
    return billed, paid


def select_members(fills: pd.DataFrame, need: int, rng: np.random.Generator) -> pd.DataFrame:
    """Exactly ``need`` fills: whole members in random order, the last one cut after a prefix of
    its fills (a prefix of a chain is still a valid chain)."""
    members = fills["member"].unique()
    priority = pd.Series(rng.permutation(len(members)), index=members)
    rank = priority.loc[fills["member"].to_numpy()].to_numpy()
    order = np.lexsort((fills["position"].to_numpy(), fills["chain"].to_numpy(), rank))
    return fills.iloc[np.sort(order[:need])].reset_index(drop=True)
