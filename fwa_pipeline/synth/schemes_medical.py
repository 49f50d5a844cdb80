"""Planted medical schemes (RULE-MED-001..012) and their labels.

Provider-level schemes (E/M upcoding, modifier overuse, billing outliers, excluded providers) are
decided before clean generation, as knobs on a provider's otherwise clean profile; their labels
are derived from the final lines so they always match the rule's own semantics. The other schemes
add lines, each in an encounter of its own (a (member, provider, day) not otherwise used), built to
trip only its own rule. Added lines go to providers in proportion to their volume and, where the
scheme allows, to members the provider already treats, so no provider's peer statistics (billed
and services per member, level and modifier shares) move by chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fwa_pipeline.synth import catalog
from fwa_pipeline.synth.common import (
    ANCHOR,
    WINDOW_START,
    business_days,
    cents,
    stratified,
    weyl_positions,
)
from fwa_pipeline.synth.medical import (
    MOD,
    POS_CODES,
    CodeBook,
    ProviderPlan,
    TemplateTable,
    paid_amounts,
)
from fwa_pipeline.synth.population import NO_DAY, Members, Providers

UPCODER_LEVEL_SHARE = 0.92
OVERUSER_MODIFIER_SHARE = 0.9
OUTLIER_VISITS_PER_MEMBER = 10.0
IMPOSSIBLE_DAY_LINES = 27  # x 60 minutes: more than 24 h in one day
# The rules need >= 30 distinct members on E/M lines (upcoding) and >= 30 lines (modifier
# overuse); with a margin for trimming and deaths.
MIN_UPCODER_MEMBERS = 50
MIN_LINES = 40
# Peer groups the provider-level schemes are planted in need this many providers, so that the
# rules' minimum peer counts hold with the planted provider set apart.
MIN_GROUP = 7
# An amount outlier bills this many times the fee, adding at most MAX_IMPACT to its provider's
# billed total.
OUTLIER_FACTOR = (4.5, 6.5)
MAX_IMPACT = 0.05
# Planted lines go to providers treating at least this many members where possible, and at most
# this many planted encounters per clean line to one provider.
MIN_PLANT_PANEL = 25
MAX_PLANTED_SHARE = 0.08


@dataclass
class MedicalRoles:
    """Providers and members set aside for schemes (positions in Providers / Members)."""

    upcoders: np.ndarray
    modifier_overusers: np.ndarray
    billing_outliers: np.ndarray
    excluded: np.ndarray  # billing after their exclusion date (RULE-MED-009)
    stopped: np.ndarray  # excluded, stopped billing on the date (near miss)
    never_billed: np.ndarray  # excluded before the window, no claims
    impossible_day: np.ndarray  # one > 24 h day each (RULE-MED-004)
    dead_members: np.ndarray  # billed after death (RULE-MED-006)
    impossible_days: list[tuple[int, int]] = field(default_factory=list)  # (provider, day)

    @property
    def special(self) -> np.ndarray:
        return np.concatenate(
            [
                self.upcoders,
                self.modifier_overusers,
                self.billing_outliers,
                self.excluded,
                self.stopped,
                self.never_billed,
                self.impossible_day,
            ]
        )


def _ceil(a: float, b: float) -> int:
    return int(-(-a // max(b, 1.0)))


def pick_across(
    providers: Providers, names: list[str], k: int, avoid: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """k distinct providers of the named specialties, taking turns between specialties so no
    peer group gets a second before every group got one."""
    pools = {
        n: list(rng.permutation(np.setdiff1d(providers.of_specialty(n), avoid))) for n in names
    }
    order = [names[i] for i in rng.permutation(len(names))]
    chosen: list[int] = []
    turn = 0
    while len(chosen) < k and any(pools.values()):
        pool = pools[order[turn % len(order)]]
        if pool:
            chosen.append(int(pool.pop()))
        turn += 1
    return np.array(chosen, dtype=np.int64)


def expected_lines(
    providers: Providers, lines_per_individual: float, lines_per_organization: float
) -> np.ndarray:
    """Clean lines each provider is planned to bill: its type's average, scaled by how busy its
    specialty is."""
    spec = np.maximum(providers.specialty, 0)
    busy = np.array([s.volume for s in catalog.SPECIALTIES])[spec]
    lines = np.zeros(len(providers))
    for kind, average in (
        ("individual", lines_per_individual),
        ("organization", lines_per_organization),
    ):
        rows = providers.provider_type == kind
        lines[rows] = average * busy[rows] / busy[rows].mean()
    return lines


def reserve(
    members: Members,
    providers: Providers,
    target: int,
    lines_per_individual: float,
    member_taken: np.ndarray,
    rng: np.random.Generator,
) -> MedicalRoles:
    """Choose scheme providers and members; set their exclusion dates and deaths."""
    sizes = {s.name: len(providers.of_specialty(s.name)) for s in catalog.SPECIALTIES}
    lines = expected_lines(providers, lines_per_individual, 0.0)
    busy = {s.name: lines[providers.of_specialty(s.name)].mean() for s in catalog.SPECIALTIES}
    big = [
        s.name
        for s in catalog.SPECIALTIES
        if s.provider_type == "individual" and sizes[s.name] >= MIN_GROUP
    ]
    # Office E/M specialties seeing many distinct members (not the therapy-like ones).
    em = [
        s.name
        for s in catalog.SPECIALTIES
        if s.name in big and s.em_high_share is not None and s.visits_per_member == catalog.VISITS
    ]
    # Upcoding is judged among peers with >= 30 members on E/M lines: plant it only where most
    # providers are that busy (E/M on ~85% of visits, ~1.7 visits and 1.3 lines a visit).
    em_hosts = [name for name in em if busy[name] >= 30 * 1.7 * 1.3 / 0.85] or em[:2]
    taken = np.zeros(0, dtype=np.int64)

    def take(names: list[str], k: int) -> np.ndarray:
        nonlocal taken
        chosen = pick_across(providers, names, k, taken, rng)
        taken = np.concatenate([taken, chosen])
        return chosen

    # Office E/M lines of an upcoder (on ~70% of its visits, with its volume floor).
    em_lines = 0.7 * max(lines_per_individual / 1.3, MIN_UPCODER_MEMBERS * 1.4)
    roles = MedicalRoles(
        upcoders=take(em_hosts, max(2, _ceil(target, UPCODER_LEVEL_SHARE * em_lines))),
        modifier_overusers=take(big, max(2, _ceil(target, 0.7 * lines_per_individual))),
        billing_outliers=take(em, max(2, _ceil(target, 0.9 * lines_per_individual))),
        # Exclusions change a provider's profile (stopped early, or no claims): take them from
        # the biggest peer groups.
        excluded=take(em_hosts, max(2, _ceil(target, 0.45 * lines_per_individual))),
        stopped=take(em_hosts, 1 + len(providers) // 2000),
        never_billed=take(em_hosts, 2 + len(providers) // 1000),
        impossible_day=take(list(catalog.IMPOSSIBLE_DAY_SERVICE), _ceil(target, 27)),
        dead_members=np.zeros(0, dtype=np.int64),
    )
    window = (WINDOW_START + 240, ANCHOR - 240)
    for group in (roles.excluded, roles.stopped):
        providers.exclusion_day[group] = rng.integers(*window, len(group))
    providers.exclusion_day[roles.never_billed] = rng.integers(
        WINDOW_START - 3000, WINDOW_START - 30, len(roles.never_billed)
    )
    # Members billed after death: adults alive at the start, dying early enough to leave room.
    age = members.age_at_start()
    pool = np.flatnonzero((age >= 30) & (age <= 85) & (members.dod == NO_DAY) & ~member_taken)
    roles.dead_members = rng.choice(pool, size=_ceil(target, 2), replace=False)
    member_taken[roles.dead_members] = True
    members.dod[roles.dead_members] = rng.integers(
        WINDOW_START + 240, ANCHOR - 90, len(roles.dead_members)
    )
    return roles


def provider_plan(
    providers: Providers,
    roles: MedicalRoles,
    lines_per_individual: float,
    lines_per_organization: float,
    clean_lines: float,
    table: TemplateTable,
    rng: np.random.Generator,
) -> ProviderPlan:
    """Clean knobs per provider, evenly spread within each specialty, then the schemes'
    overrides; encounters scaled so the clean lines come to about ``clean_lines``. Visits and
    billed per member both follow one evenly spread factor."""
    n = len(providers)
    spec = providers.specialty
    medical = spec >= 0
    lines = expected_lines(providers, lines_per_individual, lines_per_organization)
    unit = stratified(spec, 0.0, 1.0, rng)
    level = stratified(spec, 0.65, 1.35, rng)
    visits = np.ones(n)
    typical = np.ones(n)
    em_high = np.zeros(n)
    for s, specialty in enumerate(catalog.SPECIALTIES):
        rows = spec == s
        low, high = specialty.visits_per_member
        visits[rows] = low + (high - low) * unit[rows]
        typical[rows] = (low + high) / 2
        em_high[rows] = (specialty.em_high_share or 0.0) * level[rows]
    # Encounters grow with visits per member, so panels (members) are about the same size across
    # a specialty: every busy primary-care peer keeps the >= 30 members upcoding is judged on.
    volume = lines / table.lines_per_encounter[np.maximum(spec, 0)] * visits / typical
    volume *= rng.uniform(0.9, 1.1, n)
    plan = ProviderPlan(
        encounters=np.where(medical, np.rint(volume), 0).astype(np.int64),
        visits_per_member=visits,
        # One factor drives visits and billed per member, both linearly (0.5-1.5x the median),
        # so peer groups are evenly spread: two independent spreads can bunch a small group
        # and shrink its MAD, and their product stretches its top.
        charge=np.where(medical, (0.5 + unit) * typical / visits, 1.0),
        em_high_share=em_high,
        modifier_share=np.where(medical, stratified(spec, 0.04, 0.30, rng), 0.0),
        stop_day=np.full(n, ANCHOR + 1, dtype=np.int64),
    )
    up = roles.upcoders
    plan.em_high_share[up] = UPCODER_LEVEL_SHARE
    # Upcoding alone lifts billed per member by about a third: upcoders see members less often
    # and charge less than their peers, so the lift does not also make a billing outlier.
    plan.visits_per_member[up] = [catalog.SPECIALTIES[s].visits_per_member[0] for s in spec[up]]
    plan.charge[up] = 0.5 * typical[up] / plan.visits_per_member[up]
    plan.encounters[up] = np.maximum(
        plan.encounters[up], np.ceil(MIN_UPCODER_MEMBERS * 1.25 * plan.visits_per_member[up])
    ).astype(np.int64)
    # Individuals and organizations keep their relative volumes; all scale to the clean need.
    expected = plan.encounters * table.lines_per_encounter[np.maximum(spec, 0)]
    scale = clean_lines / expected.sum()
    plan.encounters = np.where(
        np.isin(np.arange(n), up), plan.encounters, np.rint(plan.encounters * scale)
    ).astype(np.int64)
    plan.modifier_share[roles.modifier_overusers] = OVERUSER_MODIFIER_SHARE
    # Modifier overuse is judged among providers with >= 30 lines: individuals all keep that
    # many, so no peer group thins out to an arbitrary few.
    floor = np.ceil(MIN_LINES / table.lines_per_encounter[np.maximum(spec, 0)])
    individual = (providers.provider_type == "individual") & (plan.encounters > 0)
    plan.encounters = np.where(
        individual, np.maximum(plan.encounters, floor), plan.encounters
    ).astype(np.int64)
    # Same services to a sixth of the usual members: billed and services per member ~6x peers.
    plan.visits_per_member[roles.billing_outliers] = OUTLIER_VISITS_PER_MEMBER
    plan.stop_day[roles.stopped] = providers.exclusion_day[roles.stopped]
    plan.encounters[roles.never_billed] = 0
    return plan


class Planter:
    """Builds planted lines as fresh encounters that never reuse a (member, provider, day)."""

    def __init__(
        self,
        clean: pd.DataFrame,
        members: Members,
        providers: Providers,
        roles: MedicalRoles,
        plan: ProviderPlan,
        book: CodeBook,
        table: TemplateTable,
        rng: np.random.Generator,
    ) -> None:
        self.members, self.providers, self.roles, self.plan = members, providers, roles, plan
        self.book, self.rng = book, rng
        self.days = business_days(WINDOW_START, ANCHOR)
        # Encounter keys in use: the clean ones sorted once, planted ones collected as they come.
        self.clean_keys = np.unique(self.keys(clean["member"], clean["provider"], clean["day"]))
        self.planted_keys: list[np.ndarray] = []
        self.ordinary = np.setdiff1d(np.flatnonzero(providers.specialty >= 0), roles.special)
        self.frames: list[pd.DataFrame] = []
        self.next_enc = -1
        self.dx = {d: i for i, d in enumerate(table.dx_vocab)}
        provider = clean["provider"].to_numpy()
        self.volume = np.bincount(provider, minlength=len(providers)).astype(np.float64)
        self.total = np.bincount(
            provider, weights=clean["billed"].to_numpy() / 100, minlength=len(providers)
        )
        # The members each provider treats: clean lines grouped by provider.
        order = np.argsort(provider, kind="stable")
        self.seen = clean["member"].to_numpy()[order]
        self.seen_start = np.searchsorted(provider[order], np.arange(len(providers)))
        pairs = clean.drop_duplicates(["provider", "member"])
        self.panel = np.bincount(pairs["provider"].to_numpy(), minlength=len(providers))
        self.treats = np.sort(self.pair_keys(pairs["provider"], pairs["member"]))
        # Lines planted for members a provider already treats: trimming takes as many of that
        # provider's later visits away, so its services per member stay as planned.
        self.extra = np.zeros(len(providers), dtype=np.int64)
        # Planted encounters a provider can still take without looking unlike its peers.
        self.room = np.ceil(MAX_PLANTED_SHARE * self.volume).astype(np.int64)
        self.clean = clean

    def pair_keys(self, provider: object, member: object) -> np.ndarray:
        p = np.asarray(provider, dtype=np.int64)
        return p * len(self.members) + np.asarray(member, dtype=np.int64)

    def keys(self, member: object, provider: object, day: object) -> np.ndarray:
        m = np.asarray(member, dtype=np.int64)
        p = np.asarray(provider, dtype=np.int64)
        d = np.asarray(day, dtype=np.int64)
        return (m * len(self.providers) + p) * 4096 + (d - WINDOW_START + 1024)

    def of(self, *specialties: str) -> np.ndarray:
        """Ordinary providers of those specialties (those with clean lines, if any have)."""
        ids = np.intersect1d(self.providers.of_specialty(*specialties), self.ordinary)
        busy = ids[self.volume[ids] > 0]
        return busy if len(busy) else ids

    def able(self, specialty: str, codes: tuple[str, ...]) -> np.ndarray:
        """Ordinary providers of the specialty big enough for an encounter billing ``codes``:
        a panel of MIN_PLANT_PANEL and a billed total the encounter moves by <= MAX_IMPACT."""
        candidates = self.of(specialty)
        cost = 1.2 * sum(self.book.fee[self.book[c]] for c in codes)
        return candidates[self.roomy(candidates) & (cost <= MAX_IMPACT * self.total[candidates])]

    def usable(self, entries: list[tuple], specialty: int, codes: slice) -> list[tuple]:
        """The scheme entries (specialty at ``entry[specialty]``, codes at ``entry[codes]``)
        some provider is able to take; all of them when none is (tiny batches)."""
        fit = [e for e in entries if len(self.able(e[specialty], tuple(e[codes])))]
        return fit or entries

    def by_volume(self, specialty: str, k: int, codes: tuple[str, ...]) -> np.ndarray:
        """k providers of the specialty in proportion to clean volume (+-1): able ones first
        (see :meth:`able`), none past its room for planted encounters; the rest of the
        specialty takes what they cannot (and, in tiny batches, whatever is left)."""
        picks: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
        pools = (self.able(specialty, codes), self.of(specialty), self.of(specialty))
        for round_number, pool in enumerate(pools):
            need = k - sum(len(p) for p in picks)
            if need <= 0 or len(pool) == 0:
                continue
            pool = self.rng.permutation(pool)
            edges = np.cumsum(self.volume[pool] + 1e-9)
            slot = np.searchsorted(edges / edges[-1], weyl_positions(need, self.rng), "right")
            take = pool[np.minimum(slot, len(pool) - 1)]
            if round_number < 2:  # the last round ignores room: tiny batches have too little
                turn = pd.Series(take).groupby(take).cumcount().to_numpy()
                take = take[turn < self.room[take]]
            np.subtract.at(self.room, take, 1)
            picks.append(take)
        return self.rng.permutation(np.concatenate(picks))

    def alive_adults(self) -> np.ndarray:
        return (self.members.dod == NO_DAY) & (self.members.age_at_start() >= 18)

    def roomy(self, provider: np.ndarray) -> np.ndarray:
        """Providers with panels large enough that one more line or member moves their per-member
        figures by a few percent only."""
        return self.panel[provider] >= MIN_PLANT_PANEL

    def patients(self, provider: np.ndarray, fits: np.ndarray | None = None) -> np.ndarray:
        """A member the provider already treats (alive, and ``fits`` when given) per row; a
        random such member of the whole population where the panel has none (a new patient)."""
        ok = self.members.dod == NO_DAY
        if fits is not None:
            ok &= fits
        count = np.diff(np.r_[self.seen_start, len(self.seen)])[provider]
        member = np.zeros(len(provider), dtype=np.int64)
        todo = np.arange(len(provider))
        for _ in range(20):
            pick = self.seen_start[provider[todo]] + (
                self.rng.random(len(todo)) * count[todo]
            ).astype(np.int64)
            member[todo] = self.seen[np.minimum(pick, len(self.seen) - 1)]
            todo = todo[~ok[member[todo]] | (count[todo] == 0)]
            if len(todo) == 0:
                break
        member[todo] = self.rng.choice(np.flatnonzero(ok), size=len(todo))
        return member

    def free_days(
        self, member: np.ndarray, provider: np.ndarray, low: np.ndarray, high: np.ndarray
    ) -> np.ndarray:
        """A business day in [low, min(high, anchor)] per encounter where that member has no
        encounter with that provider (drawn again until free)."""
        lo = np.searchsorted(self.days, low, side="left")
        hi = np.searchsorted(self.days, np.minimum(high, ANCHOR), side="right")
        day = np.zeros(len(member), dtype=np.int64)
        todo = np.arange(len(member))
        for _ in range(200):
            day[todo] = self.days[lo[todo] + self.rng.integers(0, hi[todo] - lo[todo])]
            keys = self.keys(member, provider, day)
            clash = self.in_use(keys) | pd.Series(keys).duplicated().to_numpy()
            todo = np.flatnonzero(clash)
            if len(todo) == 0:
                break
        self.planted_keys.append(self.keys(member, provider, day))
        return day

    def in_use(self, keys: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(self.clean_keys, keys), len(self.clean_keys) - 1)
        planted = np.concatenate(self.planted_keys) if self.planted_keys else keys[:0]
        return (self.clean_keys[at] == keys) | np.isin(keys, planted)

    def anytime(self, member: np.ndarray, provider: np.ndarray) -> np.ndarray:
        n = len(member)
        return self.free_days(member, provider, np.full(n, WINDOW_START), np.full(n, ANCHOR))

    def add_one_line(
        self,
        provider: np.ndarray,
        fits: np.ndarray,
        code: np.ndarray,
        rule: str,
        *,
        dx: tuple[str, ...],
        units: np.ndarray | None = None,
        fee_range: tuple[float, float] | None = None,
    ) -> None:
        """One encounter per row with one line of ``code`` labelled ``rule``, for a patient of
        the provider who ``fits``, on a free day; priced as fee x ``units`` x a factor drawn
        from ``fee_range`` when that is given, else as the provider charges."""
        member = self.patients(provider, fits)
        day = self.anytime(member, provider)
        fee_factor = None if fee_range is None else self.rng.uniform(*fee_range, len(code))
        self.add(
            member,
            provider,
            day,
            [code],
            [rule],
            units=None if units is None else [units],
            fee_factor=fee_factor,
            dx=dx,
        )

    def add(
        self,
        member: np.ndarray,
        provider: np.ndarray,
        day: np.ndarray,
        codes: list[np.ndarray],
        rules: list[str],
        units: list[np.ndarray] | None = None,
        modifiers: list[np.ndarray] | None = None,
        fee_factor: np.ndarray | None = None,
        dx: tuple[str, ...] = ("Z00.00",),
        pos: str = "11",
    ) -> None:
        """One encounter per row, one line per entry of ``codes`` (in slot order); ``rules[i]``
        labels slot i ('' for unlabelled lines). Amounts follow the provider's charges unless
        ``fee_factor`` prices the line as fee x units x factor."""
        n = len(member)
        pair = self.pair_keys(provider, member)
        at = np.minimum(np.searchsorted(self.treats, pair), len(self.treats) - 1)
        known = self.treats[at] == pair
        np.add.at(self.extra, np.asarray(provider)[known], len(codes))
        key = self.rng.random(n)
        enc = self.next_enc - np.arange(n)
        self.next_enc -= n
        dx_ids = np.array([self.dx[d] for d in dx])[self.rng.integers(0, len(dx), n)]
        for slot, code in enumerate(codes):
            code = np.broadcast_to(np.asarray(code, dtype=np.int64), (n,))
            u = self.book.clean_units(code, self.rng) if units is None else units[slot]
            if fee_factor is None:
                billed = self.book.amounts(code, u, self.plan.charge[provider], self.rng)
            else:
                billed = cents(self.book.fee[code] * u * fee_factor)
            modifier = self.book.routine_modifier[code] if modifiers is None else modifiers[slot]
            self.frames.append(
                pd.DataFrame(
                    {
                        "enc": enc,
                        "key": key,
                        "slot": np.int8(slot),
                        "member": member,
                        "provider": provider,
                        "day": day,
                        "cpt": code,
                        "modifier": np.asarray(modifier, dtype=np.int8),
                        "dx": dx_ids,
                        "units": u,
                        "pos": np.int8(POS_CODES.index(pos)),
                        "billed": billed,
                        "paid": paid_amounts(billed, self.rng),
                        "label": rules[slot],
                        # The scheme is in the modifier: finalize must not replace it.
                        "fixed": modifiers is not None,
                    }
                )
            )

    def fitting(self, gender: str | None, low: int, high: int) -> np.ndarray:
        """Members of that gender (any when None) aged low..high at the window start."""
        age = self.members.age_at_start()
        ok = (age >= low) & (age <= high)
        return ok & (self.members.gender == gender) if gender else ok


def first_nonempty(*masks: np.ndarray) -> np.ndarray:
    """The first mask selecting anything (the last one otherwise): preferences in order."""
    return next((mask for mask in masks if mask.any()), masks[-1])


def planted_lines(target: int, impossible_days: int) -> int:
    """About how many lines the medical schemes add (to size the clean volume)."""
    # duplicates, unbundling (+ near misses, two lines each), MUE, deaths, gender, age, amounts
    return target * (1 + 2 + 1 + 1 + 1 + 1 + 1) + 2 * max(2, target // 4) + 27 * impossible_days


def plant(p: Planter, ncci: pd.DataFrame, target: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The medical plants that add encounters (with a ``label`` column), and per provider the
    lines planted for members it already treats (for :func:`medical.trim`). Duplicates come
    later, from the final clean lines (:func:`duplicates`)."""
    _unbundling(p, ncci, target)
    _units_over_mue(p, target)
    _impossible_days(p)
    _after_death(p)
    _gender(p, target)
    _age(p, target)
    _amount_outliers(p, target)
    return pd.concat(p.frames, ignore_index=True), p.extra


def duplicates(
    clean: pd.DataFrame, roles: MedicalRoles, book: CodeBook, target: int, rng: np.random.Generator
) -> pd.DataFrame:
    """RULE-MED-001: exact copies of final clean lines under new claim ids, a tenth of them
    twice. Originals keep the summed units within MUE (so a copy is not also an MUE violation),
    carry no 25/59 and belong to ordinary providers."""
    units = clean["units"].to_numpy()
    mue = book.mue[clean["cpt"].to_numpy()]
    ok = ~np.isin(clean["modifier"].to_numpy(), [MOD["25"], MOD["59"]]) & ~np.isin(
        clean["provider"].to_numpy(), roles.special
    )
    thrice = rng.permutation(np.flatnonzero(ok & (3 * units <= mue)))[: target // 10]
    twice_ok = np.setdiff1d(np.flatnonzero(ok & (2 * units <= mue)), thrice)
    twice = rng.choice(twice_ok, size=min(target - 2 * len(thrice), len(twice_ok)), replace=False)
    copies = clean.iloc[np.concatenate([twice, thrice, thrice])].copy()
    copies["copy"] = np.r_[np.ones(len(twice) + len(thrice)), np.full(len(thrice), 2)]
    copies["copy"] = copies["copy"].astype(np.int8)
    copies["label"] = "RULE-MED-001"
    return copies


def _unbundling(p: Planter, ncci: pd.DataFrame, target: int) -> None:
    """RULE-MED-002: both codes of a pair on one member, provider and day; the column-2 line is
    the hit unless the pair allows a modifier and carries 59/XS/XU (those near misses are planted
    too, unlabelled). Some hits carry a modifier that does not excuse them."""
    allowed = {
        (a, b): bool(m)
        for a, b, m in ncci[["column1_code", "column2_code", "modifier_allowed"]].itertuples(
            index=False
        )
    }
    entries = p.usable([(*pair, name) for pair, name in catalog.NCCI_BILLERS.items()], 2, slice(2))
    allowing = [entry for entry in entries if allowed[entry[:2]]] or entries
    for count, pair_list, near in ((target, entries, False), (max(2, target // 4), allowing, True)):
        which = np.arange(count) % len(pair_list)
        for i, (col1, col2, name) in enumerate(pair_list):
            n = int((which == i).sum())
            if n == 0:
                continue
            provider = p.by_volume(name, n, (col1, col2))
            member = p.patients(provider)
            day = p.anytime(member, provider)
            if near:
                mod2 = np.array([MOD["59"], MOD["XS"], MOD["XU"]])[p.rng.integers(0, 3, n)]
            else:
                other = MOD["RT"] if allowed[(col1, col2)] else MOD["59"]
                mod2 = np.where(p.rng.random(n) < 0.2, other, 0)
            mod1 = np.full(n, p.book.routine_modifier[p.book[col1]])
            p.add(
                member,
                provider,
                day,
                [np.full(n, p.book[col1]), np.full(n, p.book[col2])],
                ["", "" if near else "RULE-MED-002"],
                units=[np.ones(n, np.int64)] * 2,
                modifiers=[mod1, mod2],
                dx=("M54.50", "E11.9", "R07.9", "K63.5", "Z01.89"),
            )


def _units_over_mue(p: Planter, target: int) -> None:
    """RULE-MED-003: one line with MUE + 1 units, on codes whose clean units run up to the MUE,
    priced plainly (fee x units) so the amount stays inside the code's clean range. Codes are
    drawn by clean volume so plants stay a small share of any code."""
    book = p.book
    eligible = np.flatnonzero((book.units_high == book.mue) & (book.mue >= 4))
    pairs = p.clean[["cpt", "provider"]]
    ok = np.isin(pairs["cpt"].to_numpy(), eligible) & np.isin(
        pairs["provider"].to_numpy(), p.ordinary
    )
    pairs = pairs[first_nonempty(ok & p.roomy(pairs["provider"].to_numpy()), ok)]
    if pairs.empty:
        return
    # A line of a random clean (code, provider) line: codes and billers by clean volume.
    row = pairs.iloc[p.rng.choice(len(pairs), size=target, replace=True)]
    code, provider = row["cpt"].to_numpy(), row["provider"].to_numpy()
    p.add_one_line(
        provider,
        p.alive_adults(),
        code,
        "RULE-MED-003",
        units=book.mue[code] + 1,
        fee_range=(0.95, 1.05),
        dx=("M17.11", "M54.50", "J18.9"),
    )


def _impossible_days(p: Planter) -> None:
    """RULE-MED-004: a therapist bills an hour each to 27 members on one day (> 24 h), on a day
    with no other encounter of that provider."""
    taken = np.concatenate([p.clean_keys, *p.planted_keys])
    taken_days = taken % 4096 + WINDOW_START - 1024
    taken_providers = (taken // 4096) % len(p.providers)
    adults = np.flatnonzero(p.alive_adults())
    for provider in p.roles.impossible_day:
        name = catalog.SPECIALTIES[p.providers.specialty[provider]].name
        code, units = catalog.IMPOSSIBLE_DAY_SERVICE[name]
        free = np.setdiff1d(p.days, taken_days[taken_providers == provider])
        day = int(p.rng.choice(free))
        n = IMPOSSIBLE_DAY_LINES
        member = p.rng.choice(adults, size=n, replace=False)
        p.roles.impossible_days.append((int(provider), day))
        p.planted_keys.append(p.keys(member, np.full(n, provider), np.full(n, day)))
        p.add(
            member,
            np.full(n, provider),
            np.full(n, day),
            [np.full(n, p.book[code])],
            [""],
            units=[np.full(n, units)],
            dx=("F32.9", "F41.1", "M54.50"),
        )


def _after_death(p: Planter) -> None:
    """RULE-MED-006: two visits 3-60 days after the member's death: the service the member last
    had while alive, billed again by the same provider (an office visit at a family physician
    when the member had no such care, or it was age-limited)."""
    dead = np.concatenate([p.roles.dead_members, p.roles.dead_members])
    provider = p.clean["provider"].to_numpy()
    clean = p.clean[
        np.isin(p.clean["member"].to_numpy(), p.roles.dead_members)
        & np.isin(provider, p.ordinary)
        & p.roomy(provider)
    ]
    last = clean.sort_values("day", kind="stable").groupby("member")[["provider", "cpt"]].last()
    last = last[~p.book.age_limited[last["cpt"].to_numpy()]].reindex(dead)
    provider = last["provider"].to_numpy(dtype=np.float64)
    missing = np.isnan(provider)
    fallback = p.by_volume("Family Medicine", len(dead), ("99213",))
    provider = np.where(missing, fallback, provider).astype(np.int64)
    code = np.where(missing, p.book["99213"], last["cpt"].fillna(0).to_numpy()).astype(np.int64)
    dod = p.members.dod[dead]
    day = p.free_days(dead, provider, dod + 3, dod + 60)
    p.add(dead, provider, day, [code], ["RULE-MED-006"], dx=("I10", "E11.9", "R05.9"))


def _gender(p: Planter, target: int) -> None:
    """RULE-MED-007: a gender-limited code billed for a member of the other gender."""
    entries = p.usable(list(catalog.GENDER_MISMATCHES), 2, slice(1))
    which = np.arange(target) % len(entries)
    for i, (code, gender, name) in enumerate(entries):
        n = int((which == i).sum())
        provider = p.by_volume(name, n, (code,))
        p.add_one_line(
            provider,
            p.fitting(gender, 25, 70),
            np.full(n, p.book[code]),
            "RULE-MED-007",
            dx=("Z01.419", "Z12.5", "N40.1"),
        )


def _age(p: Planter, target: int) -> None:
    """RULE-MED-008: an age-limited code for a member years outside its range on the day."""
    entries = p.usable(list(catalog.AGE_MISMATCHES), 3, slice(1))
    which = np.arange(target) % len(entries)
    for i, (code, low, high, name) in enumerate(entries):
        n = int((which == i).sum())
        provider = p.by_volume(name, n, (code,))
        p.add_one_line(
            provider,
            p.fitting(None, low, high - 2),
            np.full(n, p.book[code]),
            "RULE-MED-008",
            dx=("Z00.00", "Z00.129"),
        )


def _amount_outliers(p: Planter, target: int) -> None:
    """RULE-MED-012: one unit of a common, non-timed, unrestricted code billed at 4.5-6.5x its fee,
    at a provider that bills the code and whose billed total the line moves by at most
    MAX_IMPACT; at most 3% of a code's lines, so they stay > 3 SD above its mean."""
    book = p.book
    clean = p.clean
    counts = np.bincount(clean["cpt"].to_numpy(), minlength=len(book.codes))
    # Office E/M lines get their level at the end (finalize); an outlier must keep its code.
    eligible = (
        (book.units_high == 1)
        & (book.minutes == 0)
        & ~book.age_limited
        & (book.gender == "")
        & (book.office_em == 0)
        & (counts >= 20)
    )
    pairs = clean[["cpt", "provider"]].drop_duplicates()
    code, provider = pairs["cpt"].to_numpy(), pairs["provider"].to_numpy()
    ok = eligible[code] & np.isin(provider, p.ordinary)
    small = OUTLIER_FACTOR[1] * book.fee[code] <= MAX_IMPACT * p.total[provider]
    # Tiny batches may have no provider that big: then the nearest thing.
    pairs = pairs[first_nonempty(ok & small & p.roomy(provider), ok & small, ok)]
    # Candidate pairs in random order; at most 3% of a code's lines; providers evenly.
    pairs = pairs.iloc[p.rng.permutation(len(pairs))]
    quota = np.maximum(counts[pairs["cpt"].to_numpy()] // 33, 1)
    pairs = pairs[pairs.groupby("cpt").cumcount().to_numpy() < quota]
    turn = pairs.groupby("provider").cumcount().to_numpy()
    pairs = pairs.iloc[np.argsort(turn, kind="stable")][:target]
    code, provider = pairs["cpt"].to_numpy(), pairs["provider"].to_numpy()
    p.add_one_line(
        provider,
        p.alive_adults(),
        code,
        "RULE-MED-012",
        units=np.ones(len(code), np.int64),
        fee_range=OUTLIER_FACTOR,
        dx=("R05.9", "M54.50", "I10"),
    )


def aggregate_labels(
    lines: pd.DataFrame, roles: MedicalRoles, book: CodeBook, exclusion_day: np.ndarray
) -> pd.DataFrame:
    """Labels of the provider-level rules, derived from the final lines: (row, rule)."""
    provider = lines["provider"].to_numpy()
    cpt = lines["cpt"].to_numpy()
    day = lines["day"].to_numpy()
    impossible = np.zeros(len(lines), dtype=bool)
    for prov, d in roles.impossible_days:
        impossible |= (provider == prov) & (day == d)
    overuse = np.isin(lines["modifier"].to_numpy(), [MOD["25"], MOD["59"]])
    masks = {
        "RULE-MED-004": impossible & (book.minutes[cpt] > 0),
        "RULE-MED-005": np.isin(provider, roles.upcoders) & (book.em_level[cpt] >= 4),
        "RULE-MED-009": np.isin(provider, roles.excluded) & (day >= exclusion_day[provider]),
        "RULE-MED-010": np.isin(provider, roles.modifier_overusers) & overuse,
        "RULE-MED-011": np.isin(provider, roles.billing_outliers),
    }
    return pd.concat(
        [pd.DataFrame({"row": np.flatnonzero(mask), "rule": rule}) for rule, mask in masks.items()],
        ignore_index=True,
    )
