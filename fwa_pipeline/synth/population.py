"""Members and providers: who exists, before anyone gets care.

Everything is kept as arrays indexed by position (member 0..n-1, provider 0..p-1); ids and names
are strings only for writing. Exclusions and deaths that schemes need are set later by the
scheme planners, before any claim is generated, so clean claims can respect them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fwa_pipeline.npi import make_npis
from fwa_pipeline.synth import catalog
from fwa_pipeline.synth.common import ANCHOR, WINDOW_START, age_on

NO_DAY = np.iinfo(np.int64).min  # "no date" in integer day columns
GENDERS = np.array(["F", "M", "U"])


@dataclass
class Members:
    """The plan's members, one array element each (position = member index)."""

    dob: np.ndarray  # day numbers
    gender: np.ndarray  # "F" | "M" | "U"
    state: np.ndarray
    first_name: np.ndarray
    last_name: np.ndarray
    dod: np.ndarray  # day numbers, NO_DAY when alive

    def __len__(self) -> int:
        return len(self.dob)

    def age_at_start(self) -> np.ndarray:
        """Whole years of age on the first day of the claims window."""
        return age_on(self.dob, np.full(len(self.dob), WINDOW_START))


@dataclass
class Providers:
    """Individuals, organizations and pharmacies (position = provider index)."""

    npi: np.ndarray
    name: np.ndarray
    provider_type: np.ndarray  # individual | organization | pharmacy
    specialty: np.ndarray  # index into catalog.SPECIALTIES, -1 for pharmacies
    state: np.ndarray
    exclusion_day: np.ndarray  # NO_DAY when not excluded

    def __len__(self) -> int:
        return len(self.npi)

    @property
    def excluded(self) -> np.ndarray:
        return self.exclusion_day != NO_DAY

    def of_specialty(self, *names: str) -> np.ndarray:
        wanted = [i for i, s in enumerate(catalog.SPECIALTIES) if s.name in names]
        return np.flatnonzero(np.isin(self.specialty, wanted))

    def specialty_name(self) -> np.ndarray:
        names = np.array([s.name for s in catalog.SPECIALTIES] + [catalog.PHARMACY_SPECIALTY])
        return names[self.specialty]


def make_members(n: int, rng: np.random.Generator) -> Members:
    """Members with names, ages 0-95 when the window opens, state, and a few clean deaths."""
    gender = GENDERS[rng.choice(3, size=n, p=[0.495, 0.495, 0.01])]
    # Ages at the start of the window: children, working-age adults, seniors. Everyone is born
    # before the window opens, so no claim can predate a birth.
    band = rng.choice(3, size=n, p=[0.22, 0.60, 0.18])
    low = np.array([0, 18, 65])[band] * 365.25
    high = np.array([18, 65, 95])[band] * 365.25
    dob = WINDOW_START - np.floor(rng.uniform(low, high)).astype(np.int64) - 1
    state = np.array(catalog.STATES)[rng.choice(len(catalog.STATES), n, p=catalog.STATE_WEIGHTS)]
    female = np.array(catalog.FIRST_NAMES_F)[rng.integers(0, len(catalog.FIRST_NAMES_F), n)]
    male = np.array(catalog.FIRST_NAMES_M)[rng.integers(0, len(catalog.FIRST_NAMES_M), n)]
    unknown_female = rng.random(n) < 0.5
    first = np.where((gender == "F") | ((gender == "U") & unknown_female), female, male)
    last = np.array(catalog.LAST_NAMES)[rng.integers(0, len(catalog.LAST_NAMES), n)]
    # A few clean deaths, mostly among the oldest, inside the window; their claims stop before.
    dod = np.full(n, NO_DAY, dtype=np.int64)
    risk = np.where(band == 2, 0.045, 0.003)
    dies = rng.random(n) < risk
    dod[dies] = rng.integers(WINDOW_START + 30, ANCHOR - 10, dies.sum())
    return Members(dob, gender, state, first, last, dod)


def split_counts(total: int, shares: np.ndarray, minimum: np.ndarray) -> np.ndarray:
    """Integer counts proportional to ``shares`` (largest remainder), each at least ``minimum``."""
    raw = np.maximum(shares / shares.sum() * total, minimum)
    counts = np.floor(raw).astype(np.int64)
    remainder = int(max(total - counts.sum(), 0))
    counts[np.argsort(-(raw - counts), kind="stable")[:remainder]] += 1
    return counts


def make_providers(
    n_individual: int, n_organization: int, n_pharmacy: int, rng: np.random.Generator
) -> Providers:
    """Providers with valid, unique NPIs, specialties split by share, names and states."""
    kinds = ("individual", "organization")
    specialty_parts = []
    for kind, total in zip(kinds, (n_individual, n_organization), strict=True):
        idx = np.array([i for i, s in enumerate(catalog.SPECIALTIES) if s.provider_type == kind])
        shares = np.array([catalog.SPECIALTIES[i].share for i in idx])
        # Enough peers per specialty: a robust z among few is fragile (one peer drifting
        # towards the median shrinks the MAD).
        minimum = np.array([catalog.SPECIALTIES[i].min_providers for i in idx])
        specialty_parts.append(np.repeat(idx, split_counts(total, shares, minimum)))
    specialty = np.concatenate([*specialty_parts, np.full(n_pharmacy, -1)])
    n = len(specialty)
    ptype = np.where(
        specialty < 0,
        "pharmacy",
        np.array([s.provider_type for s in catalog.SPECIALTIES])[np.maximum(specialty, 0)],
    )
    # Real NPIs start with 1 or 2; identifiers are drawn without replacement so NPIs are unique.
    npi = make_npis(100_000_000 + rng.choice(200_000_000, size=n, replace=False))
    state = np.array(catalog.STATES)[rng.choice(len(catalog.STATES), n, p=catalog.STATE_WEIGHTS)]
    name = _provider_names(specialty, ptype, rng)
    return Providers(npi, name, ptype, specialty, state, np.full(n, NO_DAY, dtype=np.int64))


def _provider_names(
    specialty: np.ndarray, ptype: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    n = len(specialty)
    first = np.where(
        rng.random(n) < 0.5,
        np.array(catalog.FIRST_NAMES_F)[rng.integers(0, len(catalog.FIRST_NAMES_F), n)],
        np.array(catalog.FIRST_NAMES_M)[rng.integers(0, len(catalog.FIRST_NAMES_M), n)],
    )
    last = np.array(catalog.LAST_NAMES)[rng.integers(0, len(catalog.LAST_NAMES), n)]
    credential = np.array([s.credential for s in catalog.SPECIALTIES] + [""])[specialty]
    person = np.char.add(np.char.add(np.char.add(first, " "), last), np.char.add(", ", credential))
    town = np.array(catalog.TOWNS)[rng.integers(0, len(catalog.TOWNS), n)]
    suffix = np.array([catalog.ORGANIZATION_SUFFIX.get(s.name, "") for s in catalog.SPECIALTIES])
    organization = np.char.add(np.char.add(town, " "), suffix[np.maximum(specialty, 0)])
    brand = np.array(catalog.PHARMACY_BRANDS)[rng.integers(0, len(catalog.PHARMACY_BRANDS), n)]
    store = np.char.add(np.char.add(brand, " Pharmacy #"), np.arange(101, 101 + n).astype(str))
    return np.where(
        ptype == "individual", person, np.where(ptype == "pharmacy", store, organization)
    )
