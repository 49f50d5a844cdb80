"""Clean medical claim lines.

Each provider sees a panel of members; an encounter is (member, provider, business day) and bills
one specialty template's codes, one line (one claim) per code. The shape is chosen with every rule
in mind:

* a provider's encounters fall on distinct days spread over the window (several a day only when it
  has more encounters than business days), so timed minutes per provider-day stay far below 12 h
  and no (member, provider, day) repeats;
* visits and billed per member, the level 4-5 share of office E/M and the modifier 25/59 share
  follow evenly spread per-provider factors and are realised exactly (panels sized before visits,
  low-discrepancy picks after every line is in, trimming by whole members), so peer statistics are
  spread but never bunched by chance;
* age- and gender-limited codes are only billed for members they fit, never within 30 days of a
  birthday (where ways of computing age differ), and no encounter holds both codes of an NCCI pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fwa_pipeline.synth import catalog
from fwa_pipeline.synth.common import (
    ANCHOR,
    GOLDEN,
    WINDOW_START,
    age_on,
    business_days,
    cents,
    near_birthday,
    ranks_within,
    stratified,
    weyl_take,
)
from fwa_pipeline.synth.population import NO_DAY, Members, Providers

MODIFIERS = ("", "25", "59", "GP", "RT", "LT", "XS", "XU")
MOD = {m: i for i, m in enumerate(MODIFIERS)}
OVERUSE = (MOD["25"], MOD["59"])  # the modifiers the overuse rule counts
POS_CODES = ("11", "10", "21", "22", "24", "81")
BIRTHDAY_MARGIN = 30
TRIM_PANEL = 20
EM_TOKEN = -1 - catalog.TOKENS.index(catalog.EM_ESTABLISHED)
EM_NEW_TOKEN = -1 - catalog.TOKENS.index(catalog.EM_NEW)


class CodeBook:
    """The CPT reference as arrays indexed by code position, plus the generator's fees."""

    def __init__(self, cpt: pd.DataFrame) -> None:
        self.codes = cpt["cpt_code"].to_numpy(dtype=str)
        self.index = {code: i for i, code in enumerate(self.codes)}
        fees = [catalog.CPT_FEES[code] for code in self.codes]
        self.fee = np.array([f[0] for f in fees], dtype=np.float64)
        self.units_low = np.array([f[1] for f in fees], dtype=np.int64)
        self.units_high = np.array([f[2] for f in fees], dtype=np.int64)
        self.mue = cpt["mue_limit"].fillna(99).to_numpy(dtype=np.int64)
        self.minutes = cpt["minutes_per_unit"].fillna(0).to_numpy(dtype=np.float64)
        self.gender = cpt["gender"].fillna("").to_numpy(dtype=str)
        self.min_age = cpt["min_age"].fillna(0).to_numpy(dtype=np.int64)
        self.max_age = cpt["max_age"].fillna(200).to_numpy(dtype=np.int64)
        self.em_level = cpt["em_level"].fillna(0).to_numpy(dtype=np.int64)
        self.takes_25 = np.array(
            [code.startswith(catalog.MODIFIER_25_PREFIXES) for code in self.codes]
        )
        self.routine_modifier = np.array(
            [MOD[catalog.ROUTINE_MODIFIERS.get(code, "")] for code in self.codes], dtype=np.int8
        )
        self.age_limited = (self.min_age > 0) | (self.max_age < 200)
        # 1: established-patient office E/M, 2: new-patient office E/M, 0: anything else.
        self.office_em = np.zeros(len(self.codes), dtype=np.int64)
        for family, name in enumerate((catalog.EM_ESTABLISHED, catalog.EM_NEW), start=1):
            self.office_em[[self.index[c] for c in catalog.EM_CODES[name]]] = family

    def __getitem__(self, code: str) -> int:
        return self.index[code]

    def amounts(
        self, cpt: np.ndarray, units: np.ndarray, charge: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Billed cents: fee x units x the provider's charge factor, within +-5%. Both factors
        are bounded, so no clean line is much more than 2 SD above its code's mean."""
        return cents(self.fee[cpt] * units * charge * rng.uniform(0.95, 1.05, len(cpt)))

    def clean_units(self, cpt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Units spread evenly over the code's clean range within each code (not drawn
        independently: a lone high value among a rare code's few lines would be an outlier)."""
        span = self.units_high[cpt] - self.units_low[cpt] + 1
        even = stratified(cpt, 0.0, 1.0, rng)
        return self.units_low[cpt] + np.minimum(np.floor(even * span), span - 1).astype(np.int64)


def paid_amounts(billed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Allowed share of billed; a few lines denied (paid 0)."""
    paid = cents(billed / 100 * rng.uniform(0.45, 0.8, len(billed)))
    return np.where(rng.random(len(billed)) < 0.04, 0, paid)


@dataclass
class TemplateTable:
    """All specialties' templates flattened into arrays (one row per template / per slot)."""

    specialty: np.ndarray
    weight: np.ndarray
    gender: np.ndarray
    min_age: np.ndarray
    max_age: np.ndarray
    sensitive: np.ndarray
    pos: np.ndarray
    dx_start: np.ndarray
    dx_count: np.ndarray
    slot_start: np.ndarray
    slot_count: np.ndarray
    slot_code: np.ndarray  # code position, or a negative token id (-1 - TOKENS.index)
    dx_vocab: np.ndarray
    lines_per_encounter: np.ndarray  # per specialty (weighted mean slot count)


def build_templates(book: CodeBook) -> TemplateTable:
    """Flatten the catalogue's templates, narrowing each one's ages and gender to what its fixed
    codes allow (so a template can never bill a code to a member it does not fit)."""
    dx_vocab: list[str] = []
    dx_index: dict[str, int] = {}

    def dx_id(code: str) -> int:
        if code not in dx_index:
            dx_index[code] = len(dx_vocab)
            dx_vocab.append(code)
        return dx_index[code]

    rows: list[tuple] = []
    slots: list[int] = []
    lines = np.zeros(len(catalog.SPECIALTIES))
    for s, spec in enumerate(catalog.SPECIALTIES):
        total = sum(t.weight for t in spec.templates)
        lines[s] = sum(t.weight * len(t.codes) for t in spec.templates) / total
        for t in spec.templates:
            fixed = [book[c] for c in t.codes if c not in catalog.TOKENS]
            genders = {book.gender[i] for i in fixed} - {""} | ({t.gender} - {None})
            if len(genders) > 1:
                raise ValueError(f"{spec.name} template {t.codes} mixes gender-limited codes")
            low = max([t.min_age, *(int(book.min_age[i]) for i in fixed)])
            high = min([t.max_age, *(int(book.max_age[i]) for i in fixed)])
            tokens = {c for c in t.codes if c in catalog.TOKENS}
            sensitive = bool(
                tokens & {catalog.PREVENTIVE, catalog.PREVENTIVE_NEW, catalog.WELLNESS}
            ) or any(book.age_limited[i] for i in fixed)
            if catalog.WELLNESS in tokens:
                low = max(low, int(book.min_age[book["G0438"]]))
            dx_ids = [dx_id(d) for d in t.dx]
            rows.append(
                (
                    s,
                    t.weight,
                    genders.pop() if genders else "",
                    low,
                    high,
                    sensitive,
                    POS_CODES.index(t.pos),
                    dx_ids[0],
                    len(dx_ids),
                    len(slots),
                    len(t.codes),
                )
            )
            slots.extend(
                -1 - catalog.TOKENS.index(c) if c in catalog.TOKENS else book[c] for c in t.codes
            )
    for d in catalog.PLANT_DX:
        dx_id(d)
    cols = list(zip(*rows, strict=True))
    return TemplateTable(
        specialty=np.array(cols[0]),
        weight=np.array(cols[1], dtype=np.float64),
        gender=np.array(cols[2]),
        min_age=np.array(cols[3]),
        max_age=np.array(cols[4]),
        sensitive=np.array(cols[5]),
        pos=np.array(cols[6], dtype=np.int8),
        dx_start=np.array(cols[7]),
        dx_count=np.array(cols[8]),
        slot_start=np.array(cols[9]),
        slot_count=np.array(cols[10]),
        slot_code=np.array(slots, dtype=np.int64),
        dx_vocab=np.array(dx_vocab),
        lines_per_encounter=lines,
    )


@dataclass
class ProviderPlan:
    """Per-provider knobs for clean generation (arrays over all providers)."""

    encounters: np.ndarray
    visits_per_member: np.ndarray
    charge: np.ndarray  # the provider's chargemaster relative to the typical fee
    em_high_share: np.ndarray
    modifier_share: np.ndarray
    stop_day: np.ndarray  # no encounters on or after this day (excluded and stopped billing)


def panel_pool(specialty: catalog.Specialty, members: Members) -> np.ndarray:
    """The members a specialty treats (gender, and age at the start of the window)."""
    age = members.age_at_start()
    eligible = (age >= specialty.panel_min_age) & (age <= specialty.panel_max_age)
    if specialty.panel_gender:
        eligible &= members.gender == specialty.panel_gender
    return np.flatnonzero(eligible)


def draw_panels(
    providers: Providers,
    members: Members,
    panel_size: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct panel members per provider, drawn from those the specialty treats.

    Returns (panel member array, start offset per provider)."""
    panel = np.zeros(int(panel_size.sum()), dtype=np.int64)
    starts = np.r_[0, np.cumsum(panel_size)[:-1]]
    owner = np.repeat(np.arange(len(providers)), panel_size)
    for s, spec in enumerate(catalog.SPECIALTIES):
        pool = panel_pool(spec, members)
        rows = np.flatnonzero(providers.specialty[owner] == s)
        panel[rows] = pool[rng.integers(0, len(pool), len(rows))]
        # Redraw members drawn twice for one provider until every panel is distinct.
        for _ in range(100):
            order = np.lexsort((panel[rows], owner[rows]))
            sorted_rows = rows[order]
            dup = np.r_[
                False,
                (owner[sorted_rows][1:] == owner[sorted_rows][:-1])
                & (panel[sorted_rows][1:] == panel[sorted_rows][:-1]),
            ]
            if not dup.any():
                break
            redo = sorted_rows[dup]
            panel[redo] = pool[rng.integers(0, len(pool), len(redo))]
    return panel, starts


def panel_caps(providers: Providers, members: Members) -> np.ndarray:
    """The most distinct members a provider's panel can hold (70% of its specialty's pool)."""
    caps = np.zeros(len(providers), dtype=np.int64)
    for s, spec in enumerate(catalog.SPECIALTIES):
        caps[providers.specialty == s] = int(len(panel_pool(spec, members)) * 0.7)
    return caps


def clean_encounters(
    members: Members,
    providers: Providers,
    plan: ProviderPlan,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """(member, provider, day) encounters, before templates: distinct days per provider, members
    visiting in turn, none after the member's death or the provider's stop day."""
    panel_size = np.clip(
        np.rint(plan.encounters / plan.visits_per_member).astype(np.int64),
        np.minimum(plan.encounters, 1),
        np.maximum(panel_caps(providers, members), 1),
    )
    # Encounters from the whole panel, so visits per member come out as planned, not rounded.
    n_enc = np.where(plan.encounters > 0, np.rint(panel_size * plan.visits_per_member), 0).astype(
        np.int64
    )
    panel, starts = draw_panels(providers, members, panel_size, rng)
    provider = np.repeat(np.arange(len(providers)), n_enc)
    turn = np.arange(len(provider)) - np.repeat(np.r_[0, np.cumsum(n_enc)[:-1]], n_enc)
    member = panel[starts[provider] + turn % panel_size[provider]]
    days = business_days(WINDOW_START, ANCHOR)
    date_rank = ranks_within(provider, rng)
    phase = rng.random(len(providers))
    slot = np.floor((date_rank + phase[provider]) * len(days) / n_enc[provider]).astype(np.int64)
    day = days[np.minimum(slot, len(days) - 1)]
    enc = pd.DataFrame(
        {
            "member": member,
            "provider": provider,
            "day": day,
            "rank": date_rank,
            "seat": turn % panel_size[provider],
        }
    )
    dod = members.dod[member]
    keep = ((dod == NO_DAY) | (day < dod)) & (day < plan.stop_day[provider])
    enc = enc[keep]
    return enc[~enc.duplicated(["member", "provider", "day"])].reset_index(drop=True)


def choose_templates(
    enc: pd.DataFrame,
    members: Members,
    providers: Providers,
    table: TemplateTable,
    rng: np.random.Generator,
) -> np.ndarray:
    """A template per encounter, among those that fit the member that day, with each provider's
    mix close to its specialty's weights (Weyl positions instead of independent draws)."""
    member = enc["member"].to_numpy()
    day = enc["day"].to_numpy()
    age = age_on(members.dob[member], day)
    near = near_birthday(members.dob[member], day, BIRTHDAY_MARGIN)
    gender = members.gender[member]
    spec = providers.specialty[enc["provider"].to_numpy()]
    phase = rng.random(len(providers))[enc["provider"].to_numpy()]
    position = (enc["rank"].to_numpy() * GOLDEN + phase) % 1.0
    chosen = np.full(len(enc), -1, dtype=np.int64)
    for s in range(len(catalog.SPECIALTIES)):
        rows = np.flatnonzero(spec == s)
        ids = np.flatnonzero(table.specialty == s)
        if len(rows) == 0:
            continue
        ok = (
            (
                (table.gender[ids] == "")[None, :]
                | (table.gender[ids][None, :] == gender[rows, None])
            )
            & (table.min_age[ids][None, :] <= age[rows, None])
            & (table.max_age[ids][None, :] >= age[rows, None])
            & ~(table.sensitive[ids][None, :] & near[rows, None])
        )
        weights = np.cumsum(ok * table.weight[ids][None, :], axis=1)
        total = weights[:, -1]
        pick = (weights <= (position[rows] * total)[:, None]).sum(axis=1)
        chosen[rows] = np.where(total > 0, ids[np.minimum(pick, len(ids) - 1)], -1)
    return chosen


def clean_lines(
    members: Members,
    providers: Providers,
    plan: ProviderPlan,
    book: CodeBook,
    table: TemplateTable,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Clean lines before :func:`finalize`: office E/M lines carry a provisional level 3 and
    every line its routine modifier. ``seat`` (the member's place on the provider's panel)
    drives trimming; ``key`` orders lines within a day."""
    enc = clean_encounters(members, providers, plan, rng)
    template = choose_templates(enc, members, providers, table, rng)
    enc = enc[template >= 0].reset_index(drop=True)
    template = template[template >= 0]
    n_slots = table.slot_count[template]
    line_enc = np.repeat(np.arange(len(enc)), n_slots)
    slot = np.arange(len(line_enc)) - np.repeat(np.r_[0, np.cumsum(n_slots)[:-1]], n_slots)
    line_tpl = template[line_enc]
    code = table.slot_code[table.slot_start[line_tpl] + slot]
    member = enc["member"].to_numpy()[line_enc]
    provider = enc["provider"].to_numpy()[line_enc]
    day = enc["day"].to_numpy()[line_enc]
    code = resolve_tokens(code, member, day, members, book, rng)
    units = book.clean_units(code, rng)
    billed = book.amounts(code, units, plan.charge[provider], rng)
    dx_pick = rng.integers(0, 1 << 30, len(enc)) % table.dx_count[template]
    return pd.DataFrame(
        {
            "enc": line_enc,
            "seat": enc["seat"].to_numpy()[line_enc],
            "key": rng.random(len(enc))[line_enc],
            "slot": slot.astype(np.int8),
            "member": member,
            "provider": provider,
            "day": day,
            "cpt": code,
            "modifier": book.routine_modifier[code],
            "dx": (table.dx_start[template] + dx_pick)[line_enc],
            "units": units,
            "pos": table.pos[line_tpl],
            "billed": billed,
            "paid": paid_amounts(billed, rng),
        }
    )


def resolve_tokens(
    code: np.ndarray,
    member: np.ndarray,
    day: np.ndarray,
    members: Members,
    book: CodeBook,
    rng: np.random.Generator,
) -> np.ndarray:
    """Replace template tokens by real codes: office E/M at a provisional level 3 (see
    :func:`finalize`), preventive codes from the member's age band that day, wellness visits
    initial or subsequent."""
    code = code.copy()
    code[code == EM_TOKEN] = book["99213"]
    code[code == EM_NEW_TOKEN] = book["99203"]
    token = -1 - code  # >= 0 for the remaining tokens
    for name in (catalog.PREVENTIVE, catalog.PREVENTIVE_NEW):
        rows = np.flatnonzero(token == catalog.TOKENS.index(name))
        age = age_on(members.dob[member[rows]], day[rows])
        band = np.searchsorted(np.array(catalog.PREVENTIVE_AGE_BANDS), age, side="left")
        family = np.array([book[c] for c in catalog.PREVENTIVE_CODES[name]])
        code[rows] = family[band]
    rows = np.flatnonzero(token == catalog.TOKENS.index(catalog.WELLNESS))
    code[rows] = np.where(rng.random(len(rows)) < 0.2, book["G0438"], book["G0439"])
    return code


def finalize(
    lines: pd.DataFrame, plan: ProviderPlan, book: CodeBook, rng: np.random.Generator
) -> pd.DataFrame:
    """Set office E/M levels and modifiers once every line is in (clean and planted), so each
    provider's level 4-5 share and modifier 25/59 share come out as planned (floor or ceil of the
    count, a low-discrepancy pick over its lines in random order). Lines whose modifier is part
    of a scheme (``fixed``) keep it."""
    lines = lines.copy()
    provider = lines["provider"].to_numpy()
    cpt = lines["cpt"].to_numpy().copy()
    family = book.office_em[cpt]
    rows = np.flatnonzero(family > 0)
    prov = provider[rows]
    phase = rng.random(len(plan.charge))
    high = weyl_take(ranks_within(prov, rng), plan.em_high_share[prov], phase[prov])
    draw = rng.random(len(rows))
    low_level = np.where(draw < 0.03, 1, np.where(draw < 0.25, 2, 3))
    level = np.where(high, np.where(draw < 0.2, 5, 4), low_level)
    families = np.array(
        [
            [book[c] for c in catalog.EM_CODES[name]]
            for name in (catalog.EM_ESTABLISHED, catalog.EM_NEW)
        ]
    )
    cpt[rows] = families[family[rows] - 1, level - 1]
    billed = lines["billed"].to_numpy().copy()
    billed[rows] = book.amounts(cpt[rows], np.ones(len(rows), np.int64), plan.charge[prov], rng)
    paid = lines["paid"].to_numpy().copy()
    paid[rows] = paid_amounts(billed[rows], rng)
    # The share is over all the provider's lines: scheme lines with a 25/59 count towards it,
    # the free lines make up the rest.
    modifier = lines["modifier"].to_numpy().copy()
    fixed = lines["fixed"].to_numpy()
    free = np.flatnonzero(~fixed)
    count = len(plan.charge)
    total = np.bincount(provider, minlength=count)
    already = np.bincount(provider[fixed & np.isin(modifier, OVERUSE)], minlength=count)
    open_lines = np.bincount(provider[free], minlength=count)
    quota = np.clip(plan.modifier_share * total - already, 0, None)
    fraction = np.clip(quota / np.maximum(open_lines, 1), 0.0, 1.0)
    chosen = weyl_take(
        ranks_within(provider[free], rng), fraction[provider[free]], phase[provider[free]]
    )
    overuse = np.where(book.takes_25[cpt[free]], MOD["25"], MOD["59"])
    modifier[free] = np.where(chosen, overuse, book.routine_modifier[cpt[free]])
    lines["cpt"], lines["billed"], lines["paid"], lines["modifier"] = cpt, billed, paid, modifier
    return lines


def trim(lines: pd.DataFrame, need: int, extra: np.ndarray) -> pd.DataFrame:
    """Exactly ``need`` lines. First each provider loses ``extra[provider]`` lines of its members'
    later visits (making room for lines planted for members it treats, so services per member
    stay as planned); the rest of the surplus comes off in proportion to volume by dropping the
    members on the last panel seats (all their lines, then the latest lines of one more), which
    keeps visits and services per member too."""
    surplus = len(lines) - need
    if surplus <= 0:
        return lines
    provider = lines["provider"].to_numpy()
    day = lines["day"].to_numpy()
    slot = lines["slot"].to_numpy()
    later = lines.groupby(["provider", "member"])["day"].transform("min").to_numpy() < day
    rows = np.flatnonzero(later)
    rows = rows[np.lexsort((-slot[rows], -day[rows], provider[rows]))]
    take = np.minimum(extra, np.bincount(provider[rows], minlength=len(extra)))
    if take.sum() > surplus:
        take = np.floor(take * surplus / take.sum()).astype(np.int64)
    keep = np.ones(len(lines), dtype=bool)
    keep[rows[_rank_within(provider[rows]) < take[provider[rows]]]] = False
    lines, provider = lines[keep], provider[keep]
    surplus = len(lines) - need
    volume = np.bincount(provider)
    # Only large panels give up members: one member is a big share of a small one.
    panel = np.bincount(
        lines.drop_duplicates(["provider", "member"])["provider"].to_numpy(), minlength=len(volume)
    )
    roomy = np.where(panel >= TRIM_PANEL, volume, 0)
    if roomy.sum() > 2 * surplus:
        volume = roomy
    share = surplus * volume / volume.sum()
    cut = np.floor(share).astype(np.int64)
    cut[np.argsort(-(share - cut), kind="stable")[: surplus - int(cut.sum())]] += 1
    order = np.lexsort(
        (-lines["slot"].to_numpy(), -lines["day"].to_numpy(), -lines["seat"].to_numpy(), provider)
    )
    position = np.empty(len(lines), dtype=np.int64)
    position[order] = _rank_within(provider[order])
    return lines[position >= cut[provider]].reset_index(drop=True)


def _rank_within(sorted_groups: np.ndarray) -> np.ndarray:
    """0, 1, 2... within each run of equal values of an array sorted by group."""
    return np.arange(len(sorted_groups)) - np.searchsorted(sorted_groups, sorted_groups)
