"""What clean care looks like: fees and unit ranges per code, specialties with their encounter
templates, and how each drug is dispensed; plus the parameters of the planted schemes. Only the
generator reads these tables; the rule-facing facts (MUE, age/gender edits, MME factors...) live in
the shipped reference data.

Fees stay within a few times a specialty's typical visit, and a clean fill under about $100: a
rare, very expensive service would make a small provider's (or pharmacy's) per-member figures jump
by chance. Clean units are spread evenly over their range, so no clean line sits far above its
code's mean amount (the amount-outlier rule fires at 3 SD). Templates never put both codes of an
NCCI pair into one encounter. The tests check these properties.
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------- medical codes

# code: (typical billed fee per unit in dollars, clean units low, clean units high)
CPT_FEES: dict[str, tuple[float, int, int]] = {
    "99202": (120, 1, 1),
    "99203": (180, 1, 1),
    "99204": (270, 1, 1),
    "99205": (350, 1, 1),
    "99211": (50, 1, 1),
    "99212": (95, 1, 1),
    "99213": (140, 1, 1),
    "99214": (205, 1, 1),
    "99215": (280, 1, 1),
    "99381": (220, 1, 1),
    "99382": (230, 1, 1),
    "99383": (235, 1, 1),
    "99384": (250, 1, 1),
    "99385": (250, 1, 1),
    "99386": (270, 1, 1),
    "99387": (290, 1, 1),
    "99391": (200, 1, 1),
    "99392": (210, 1, 1),
    "99393": (215, 1, 1),
    "99394": (230, 1, 1),
    "99395": (235, 1, 1),
    "99396": (250, 1, 1),
    "99397": (260, 1, 1),
    "99401": (60, 1, 1),
    "G0438": (260, 1, 1),
    "G0439": (180, 1, 1),
    "G0101": (60, 1, 1),
    "G0102": (30, 1, 1),
    "G0103": (40, 1, 1),
    "G0121": (1100, 1, 1),
    "90460": (35, 1, 2),
    "90471": (30, 1, 1),
    "90686": (45, 1, 1),
    "90715": (65, 1, 1),
    "96127": (15, 1, 1),
    "96372": (40, 1, 1),
    "36415": (15, 1, 1),
    "93000": (55, 1, 1),
    "93005": (30, 1, 1),
    "93010": (25, 1, 1),
    "93015": (250, 1, 1),
    "93306": (450, 1, 1),
    "93308": (250, 1, 1),
    "80048": (35, 1, 1),
    "80053": (45, 1, 1),
    "80061": (55, 1, 1),
    "82306": (120, 1, 1),
    "82947": (12, 1, 1),
    "83036": (40, 1, 1),
    "84153": (65, 1, 1),
    "84443": (60, 1, 1),
    "85025": (30, 1, 1),
    "85027": (25, 1, 1),
    "81001": (15, 1, 1),
    "81003": (10, 1, 1),
    "87086": (30, 1, 1),
    "87804": (40, 1, 1),
    "87880": (35, 1, 1),
    "88305": (120, 1, 2),
    "71045": (80, 1, 1),
    "71046": (110, 1, 1),
    "72100": (120, 1, 1),
    "73030": (110, 1, 1),
    "73562": (120, 1, 1),
    "73610": (100, 1, 1),
    "70450": (450, 1, 1),
    "74177": (600, 1, 1),
    "72148": (650, 1, 1),
    "73721": (600, 1, 1),
    "76700": (350, 1, 1),
    "76801": (300, 1, 1),
    "76805": (350, 1, 1),
    "77067": (280, 1, 1),
    "77080": (200, 1, 1),
    "58150": (5200, 1, 1),
    "58558": (1800, 1, 1),
    "57452": (300, 1, 1),
    "57454": (450, 1, 1),
    "59400": (4800, 1, 1),
    "59510": (5600, 1, 1),
    "55700": (450, 1, 1),
    "55250": (500, 1, 1),
    "52000": (300, 1, 1),
    "51798": (60, 1, 1),
    "20605": (150, 1, 1),
    "20610": (180, 1, 1),
    "29880": (2200, 1, 1),
    "29881": (2000, 1, 1),
    "27447": (9500, 1, 1),
    "J0696": (20, 1, 4),
    "J1100": (2, 1, 10),
    "J1885": (8, 1, 4),
    "J3301": (12, 1, 8),
    "11042": (250, 1, 1),
    "11102": (180, 1, 1),
    "11103": (90, 1, 3),
    "17000": (120, 1, 1),
    "17003": (20, 1, 6),
    "17110": (160, 1, 1),
    "97161": (150, 1, 1),
    "97162": (150, 1, 1),
    "97163": (150, 1, 1),
    "97164": (100, 1, 1),
    "97110": (45, 1, 4),
    "97112": (48, 1, 4),
    "97140": (42, 1, 4),
    "97530": (50, 1, 4),
    "90791": (250, 1, 1),
    "90792": (300, 1, 1),
    "90832": (110, 1, 1),
    "90834": (150, 1, 1),
    "90837": (210, 1, 1),
    "90833": (100, 1, 1),
    "90836": (130, 1, 1),
    "90853": (70, 1, 1),
    "45378": (1400, 1, 1),
    "45380": (1600, 1, 1),
    "45385": (1800, 1, 1),
    "43239": (1200, 1, 1),
    "66984": (1900, 1, 1),
}

# Template tokens resolved per encounter: office E/M (established / new patient) by the provider's
# level mix, preventive visits by the member's age on the day, Medicare wellness initial/subsequent.
EM_ESTABLISHED, EM_NEW, PREVENTIVE, PREVENTIVE_NEW, WELLNESS = "EM", "EMN", "PREV", "PREVN", "AWV"
TOKENS = (EM_ESTABLISHED, EM_NEW, PREVENTIVE, PREVENTIVE_NEW, WELLNESS)
# Levels 1..5 -> code, for the two office E/M families (no level-1 new-patient code exists).
EM_CODES = {
    EM_ESTABLISHED: ("99211", "99212", "99213", "99214", "99215"),
    EM_NEW: ("99202", "99202", "99203", "99204", "99205"),
}
# Preventive codes by age band (upper bounds inclusive), initial and periodic.
PREVENTIVE_AGE_BANDS = (0, 4, 11, 17, 39, 64)
PREVENTIVE_CODES = {
    PREVENTIVE_NEW: ("99381", "99382", "99383", "99384", "99385", "99386", "99387"),
    PREVENTIVE: ("99391", "99392", "99393", "99394", "99395", "99396", "99397"),
}
# E/M services (office, preventive, wellness) carry modifier 25, other codes 59, when a provider's
# modifier share selects them.
MODIFIER_25_PREFIXES = ("992", "993", "994", "G043")
# Routine, non-overuse modifiers some specialties put on most lines.
ROUTINE_MODIFIERS = {"97110": "GP", "97112": "GP", "97140": "GP", "97530": "GP", "97161": "GP",
                     "97162": "GP", "97163": "GP", "97164": "GP", "20610": "RT", "20605": "LT",
                     "73562": "RT", "73030": "LT", "73610": "RT", "73721": "RT", "29881": "RT",
                     "29880": "LT", "27447": "RT"}  # fmt: skip


@dataclass(frozen=True)
class Template:
    """One kind of encounter: the codes billed together, the diagnoses that justify them, where
    it happens and who it is for (ages inclusive, on the service date)."""

    weight: float
    codes: tuple[str, ...]
    dx: tuple[str, ...]
    pos: str = "11"
    gender: str | None = None
    min_age: int = 0
    max_age: int = 120


@dataclass(frozen=True)
class Specialty:
    name: str
    provider_type: str  # individual | organization
    share: float  # of providers of that type
    # Clean visits per member, spread evenly over this range across the specialty's providers:
    # it drives billed and services per member (the billing-outlier rule's statistics).
    visits_per_member: tuple[float, float]
    # Base share of level 4-5 office E/M visits (None: the specialty bills no office E/M).
    em_high_share: float | None
    templates: tuple[Template, ...]
    # Who is on the provider's panel (ages at the start of the window).
    panel_gender: str | None = None
    panel_min_age: int = 0
    panel_max_age: int = 120
    credential: str = "MD"
    # Claims per provider relative to the average provider of its type (primary care is busy).
    volume: float = 1.0
    # Fewest providers however small the batch: robust z needs peers.
    min_providers: int = 7


T = Template
ROUTINE_DX = ("I10", "E11.9", "E78.5", "J06.9", "M54.50", "R05.9", "K21.9", "J02.9")
CHILD_DX = ("J06.9", "H66.90", "J02.9", "R50.9", "L20.9", "J45.909")
MENTAL_DX = ("F32.9", "F41.1", "F43.23", "F33.1", "F90.0", "F31.9")
VISITS = (1.0, 2.4)

SPECIALTIES: tuple[Specialty, ...] = (
    Specialty(
        "Family Medicine",
        "individual",
        0.17,
        VISITS,
        0.3,
        (
            T(40, ("EM",), ROUTINE_DX),
            T(8, ("EMN",), ROUTINE_DX),
            T(12, ("EM", "36415"), ("E11.9", "E78.5", "I10")),
            T(4, ("EM",), ROUTINE_DX, pos="10"),
            T(3, ("EM", "96372", "J1885"), ("M54.50", "M25.561"), min_age=18),
            T(4, ("EM", "90471", "90686"), ("Z23",), min_age=18),
            T(3, ("EM", "87880"), ("J02.9",)),
            T(3, ("EM", "96127"), ("F32.9", "F41.1"), min_age=12),
            T(2, ("EM", "99401"), ("Z71.3", "E66.9"), min_age=18),
            T(3, ("EM", "93000"), ("I10", "R00.2"), min_age=40),
            T(2, ("EM", "G0103"), ("Z12.5",), gender="M", min_age=50),
            T(8, ("PREV",), ("Z00.00",), min_age=18),
            T(3, ("PREV", "G0101"), ("Z01.419",), gender="F", min_age=21, max_age=65),
            T(3, ("PREV", "90460"), ("Z00.129",), max_age=17),
            T(4, ("AWV",), ("Z00.00",), min_age=65),
        ),
        volume=2.5,
    ),
    Specialty(
        "Internal Medicine",
        "individual",
        0.14,
        VISITS,
        0.32,
        (
            T(40, ("EM",), ROUTINE_DX),
            T(8, ("EMN",), ROUTINE_DX),
            T(15, ("EM", "36415"), ("E11.9", "E78.5", "I10", "N18.30")),
            T(6, ("EM", "93000"), ("I10", "I48.91", "R00.2"), min_age=40),
            T(4, ("EM", "90471", "90686"), ("Z23",)),
            T(3, ("EM", "96372", "J1885"), ("M54.50",)),
            T(3, ("EM", "96127"), ("F32.9", "F41.1")),
            T(2, ("EM", "99401"), ("Z71.3", "E66.9")),
            T(8, ("PREV",), ("Z00.00",)),
            T(6, ("AWV",), ("Z00.00",), min_age=65),
        ),
        panel_min_age=18,
        volume=2.5,
    ),
    Specialty(
        "Pediatrics",
        "individual",
        0.10,
        VISITS,
        0.22,
        (
            T(35, ("EM",), CHILD_DX),
            T(5, ("EMN",), CHILD_DX),
            T(12, ("PREV",), ("Z00.129",)),
            T(10, ("PREV", "90460"), ("Z00.129", "Z23")),
            T(3, ("PREVN",), ("Z00.129",)),
            T(8, ("EM", "87880"), ("J02.9",)),
            T(5, ("EM", "87804"), ("J10.1", "R50.9")),
            T(2, ("EM", "96372", "J0696"), ("H66.90", "J18.9")),
            T(4, ("90460", "90686"), ("Z23",)),
            T(3, ("EM", "96127"), ("F90.0", "F41.1"), min_age=6),
        ),
        panel_max_age=17,
        credential="MD",
    ),
    Specialty(
        "Obstetrics & Gynecology",
        "individual",
        0.08,
        VISITS,
        0.25,
        (
            T(30, ("EM",), ("N94.6", "N92.0", "N76.0", "N95.1")),
            T(6, ("EMN",), ("N94.6", "N92.0", "Z30.011")),
            T(12, ("PREV", "G0101"), ("Z01.419",), min_age=21),
            T(3, ("G0101",), ("Z01.419",), min_age=21),
            T(6, ("76805",), ("Z34.82", "Z34.83"), min_age=18, max_age=44, pos="11"),
            T(3, ("76801",), ("Z34.81",), min_age=18, max_age=44),
            T(3, ("EM", "57454"), ("R87.610",), min_age=21),
            T(2, ("57452",), ("R87.610",), min_age=21),
        ),
        panel_gender="F",
        panel_min_age=15,
    ),
    Specialty(
        "Urology",
        "individual",
        0.05,
        VISITS,
        0.28,
        (
            T(35, ("EM",), ("N40.1", "R35.0", "N20.0", "R31.9")),
            T(7, ("EMN",), ("N40.1", "R31.9")),
            T(10, ("EM", "51798"), ("N40.1", "R33.9")),
            T(6, ("EM", "81001"), ("R31.9", "N39.0")),
            T(5, ("52000",), ("R31.9", "N32.89"), pos="11"),
            T(3, ("55700",), ("R97.20",), min_age=45, pos="11"),
            T(6, ("EM", "G0103"), ("Z12.5",), min_age=50),
            T(3, ("EM", "G0102"), ("Z12.5",), min_age=50),
            T(2, ("55250",), ("Z30.2",), min_age=25, max_age=55),
        ),
        panel_gender="M",
        panel_min_age=18,
    ),
    Specialty(
        "Cardiology",
        "individual",
        0.07,
        VISITS,
        0.32,
        (
            T(35, ("EM",), ("I25.10", "I48.91", "I50.9", "I10")),
            T(8, ("EMN",), ("R07.9", "I48.91", "R00.2")),
            T(20, ("EM", "93000"), ("I25.10", "I48.91", "R00.2")),
            T(8, ("93306",), ("I50.9", "I35.0", "R01.1"), pos="22"),
            T(3, ("93308",), ("I50.9",), pos="22"),
            T(4, ("93015",), ("R07.9", "I25.10"), pos="22"),
        ),
        panel_min_age=25,
    ),
    Specialty(
        "Orthopedic Surgery",
        "individual",
        0.08,
        VISITS,
        0.27,
        (
            T(30, ("EM",), ("M17.11", "M25.561", "M54.50", "M75.101")),
            T(10, ("EMN",), ("M25.561", "S83.241A", "M75.101")),
            T(12, ("EM", "20610", "J3301"), ("M17.11", "M17.12")),
            T(3, ("20605", "J3301"), ("M25.531", "M77.01")),
            T(6, ("73562",), ("M25.561", "M17.11")),
            T(3, ("96372", "J1885"), ("M54.50", "M25.561")),
        ),
        panel_min_age=12,
    ),
    Specialty(
        "Dermatology",
        "individual",
        0.06,
        VISITS,
        0.2,
        (
            T(30, ("EM",), ("L57.0", "L82.1", "L70.0", "L30.9")),
            T(10, ("EMN",), ("L57.0", "D48.5", "L82.1")),
            T(10, ("EM", "11102"), ("D48.5", "L98.9")),
            T(5, ("11102", "11103"), ("D48.5",)),
            T(12, ("17000", "17003"), ("L57.0",), min_age=30),
            T(8, ("17110",), ("B07.9", "B07.8")),
            T(2, ("11042",), ("L97.919", "L89.152"), min_age=40),
        ),
    ),
    Specialty(
        "Physical Therapy",
        "individual",
        0.09,
        (3.0, 8.0),
        None,
        (
            T(4, ("97161",), ("M54.50", "M25.561", "M75.101")),
            T(6, ("97162",), ("M54.50", "M25.561", "S83.241A")),
            T(2, ("97163",), ("M54.50", "Z96.651")),
            T(3, ("97164",), ("M54.50", "M25.561")),
            T(30, ("97110", "97140"), ("M54.50", "M25.561", "M75.101")),
            T(15, ("97110", "97112"), ("M54.50", "R26.89")),
            T(15, ("97110", "97530"), ("Z96.651", "M25.561")),
            T(8, ("97530", "97112"), ("R26.89", "Z96.651")),
            T(10, ("97110",), ("M54.50", "M75.101")),
        ),
        panel_min_age=10,
        credential="PT",
        volume=1.5,
        # One of them bills an impossible day and stops looking like its peers.
        min_providers=9,
    ),
    Specialty(
        "Clinical Psychology",
        "individual",
        0.07,
        (4.0, 10.0),
        None,
        (
            T(8, ("90791",), MENTAL_DX),
            T(35, ("90834",), MENTAL_DX),
            T(8, ("90834",), MENTAL_DX, pos="10"),
            T(30, ("90837",), MENTAL_DX),
            T(15, ("90832",), MENTAL_DX),
            T(6, ("90853",), MENTAL_DX),
            T(4, ("90834", "96127"), MENTAL_DX),
        ),
        panel_min_age=6,
        credential="PhD",
        volume=1.5,
        # One of them bills an impossible day and stops looking like its peers.
        min_providers=9,
    ),
    Specialty(
        "Psychiatry",
        "individual",
        0.07,
        (2.0, 5.0),
        0.32,
        (
            T(25, ("EM", "90833"), MENTAL_DX),
            T(35, ("EM",), MENTAL_DX),
            T(5, ("EMN",), MENTAL_DX),
            T(8, ("90792",), MENTAL_DX),
            T(8, ("EM", "90836"), MENTAL_DX),
            T(5, ("EM", "96127"), MENTAL_DX),
            T(6, ("EM",), MENTAL_DX, pos="10"),
        ),
        panel_min_age=6,
        volume=1.3,
    ),
    Specialty(
        "Clinical Laboratory",
        "organization",
        0.40,
        (1.4, 3.2),
        None,
        (
            T(15, ("36415", "80053", "85025"), ("E11.9", "I10", "Z00.00"), pos="81"),
            T(12, ("36415", "80061", "80053"), ("E78.5", "Z13.220"), pos="81"),
            T(10, ("36415", "83036"), ("E11.9", "R73.03"), pos="81"),
            T(6, ("36415", "84443"), ("E03.9", "R53.83"), pos="81"),
            T(8, ("36415", "80048", "85027"), ("N18.30", "I10"), pos="81"),
            T(6, ("81001",), ("N39.0", "R31.9"), pos="81"),
            T(5, ("81003", "87086"), ("N39.0",), pos="81"),
            T(4, ("36415", "84153"), ("Z12.5", "R97.20"), gender="M", min_age=40, pos="81"),
            T(4, ("36415", "82306"), ("E55.9",), pos="81"),
            T(5, ("88305",), ("D48.5", "K63.5"), pos="81"),
            T(4, ("36415", "82947"), ("R73.09",), pos="81"),
            T(3, ("87804",), ("J10.1",), pos="81"),
        ),
    ),
    Specialty(
        "Diagnostic Radiology",
        "organization",
        0.35,
        VISITS,
        None,
        (
            T(15, ("71046",), ("R05.9", "J18.9", "R06.02"), pos="22"),
            T(6, ("71045",), ("R05.9", "J18.9"), pos="22"),
            T(8, ("73562",), ("M25.561", "M17.11"), pos="22"),
            T(6, ("73030",), ("M25.511", "M75.101"), pos="22"),
            T(4, ("73610",), ("S93.401A", "M25.571"), pos="22"),
            T(6, ("72100",), ("M54.50",), pos="22"),
            T(5, ("70450",), ("R51.9", "S06.0X0A"), pos="22"),
            T(5, ("74177",), ("R10.9", "K57.92"), pos="22"),
            T(5, ("72148",), ("M54.16", "M51.26"), pos="22"),
            T(4, ("73721",), ("M23.221", "S83.241A"), pos="22"),
            T(5, ("76700",), ("R10.11", "K80.20"), pos="22"),
            T(10, ("77067",), ("Z12.31",), gender="F", min_age=40, pos="22"),
            T(5, ("77080",), ("Z13.820", "M81.0"), gender="F", min_age=50, pos="22"),
            T(4, ("76805",), ("Z34.82",), gender="F", min_age=18, max_age=44, pos="22"),
            T(2, ("76801",), ("Z34.81",), gender="F", min_age=18, max_age=44, pos="22"),
        ),
    ),
    Specialty(
        "Ambulatory Surgical Center",
        "organization",
        0.25,
        VISITS,
        None,
        (
            T(10, ("45378",), ("K63.5", "R19.5", "K92.1"), min_age=45, pos="24"),
            T(8, ("45380",), ("K63.5", "K52.9"), min_age=45, pos="24"),
            T(6, ("45385",), ("K63.5", "D12.6"), min_age=45, pos="24"),
            T(8, ("G0121",), ("Z12.11",), min_age=46, pos="24"),
            T(8, ("43239",), ("K21.9", "R13.10", "K29.70"), min_age=18, pos="24"),
            T(8, ("66984",), ("H25.11", "H25.12"), min_age=55, pos="24"),
            T(5, ("29881",), ("S83.241A", "M23.221"), min_age=18, pos="24"),
            T(3, ("52000",), ("R31.9",), min_age=18, pos="24"),
            T(2, ("29880",), ("S83.241A",), min_age=18, pos="24"),
            T(4, ("58558",), ("N84.0", "N92.0"), min_age=30, pos="24"),
        ),
        panel_min_age=18,
    ),
)

PHARMACY_SPECIALTY = "Pharmacy"

# --------------------------------------------------------------------------- drugs


@dataclass(frozen=True)
class DrugUse:
    """How one NDC is dispensed in clean data. ``per_day`` options keep every clean fill within
    the NDC's max_daily_quantity and every clean opioid well under 90 MME."""

    ndc: str
    use: str  # maintenance | acute | opioid | benzo | stimulant | sedative
    days_supply: tuple[int, ...]
    per_day: tuple[float, ...]
    unit_price: float
    chronic: bool = True
    min_age: int = 18
    weight: float = 1.0
    clean: bool = True  # False: only planted schemes dispense it (high-strength opioids)


D = DrugUse
DRUG_USES: tuple[DrugUse, ...] = (
    D("00406055201", "opioid", (5, 7), (4, 6), 0.45, chronic=False, weight=2),
    D("00406055301", "opioid", (30,), (2, 3), 0.65),
    D("00406055401", "opioid", (30,), (6,), 0.85, clean=False),
    D("00406055501", "opioid", (30,), (4,), 1.40, clean=False),
    D("00406052205", "opioid", (3, 5, 7), (4, 6), 0.35, chronic=False, weight=3),
    D("00406052305", "opioid", (30,), (2, 3), 0.55),
    D("00591085105", "opioid", (3, 5, 7), (4, 6), 0.25, chronic=False, weight=4),
    D("00591085205", "opioid", (5, 7), (4, 6), 0.30, chronic=False, weight=2),
    D("00591085305", "opioid", (30,), (3, 4), 0.35, weight=2),
    D("42858080101", "opioid", (30,), (2,), 0.90),
    D("42858080201", "opioid", (30,), (2,), 1.20),
    D("42858080301", "opioid", (30,), (2,), 3.00, clean=False),
    D("00054023525", "opioid", (5, 7), (3, 4), 0.50, chronic=False),
    D("00406324301", "opioid", (5, 7), (4, 6), 0.40, chronic=False),
    D("00406324401", "opioid", (30,), (2, 3), 0.60),
    D("00406324501", "opioid", (30,), (4,), 1.20, clean=False),
    D("00781724055", "opioid", (30,), (1 / 3,), 6.00),
    D("00781724155", "opioid", (30,), (1 / 3,), 7.50),
    D("00781724255", "opioid", (30,), (1 / 3,), 18.00, clean=False),
    D("00781724355", "opioid", (30,), (1 / 3,), 26.00, clean=False),
    D("00054457025", "opioid", (30,), (2,), 0.20),
    D("00054457125", "opioid", (30,), (3,), 0.30, clean=False),
    D("50458086001", "opioid", (30,), (2, 3), 0.90),
    D("00115139101", "opioid", (30,), (2, 3), 0.90),
    D("57664037788", "opioid", (5, 7, 10), (3, 4), 0.15, chronic=False, weight=3),
    D("00093015001", "opioid", (3, 5, 7), (4, 6), 0.25, chronic=False, weight=2),
    D("00228202710", "benzo", (30,), (1, 2, 3), 0.15, weight=3),
    D("00228202910", "benzo", (30,), (1, 2), 0.20),
    D("00093083201", "benzo", (30,), (1, 2), 0.12, weight=2),
    D("00093083301", "benzo", (30,), (1, 2), 0.15),
    D("00591562101", "benzo", (30,), (1, 2), 0.12),
    D("00591562201", "benzo", (30,), (1, 2), 0.15),
    D("00591024001", "benzo", (30,), (1, 2), 0.20, weight=2),
    D("00591024101", "benzo", (30,), (1, 2), 0.25),
    D("00378411001", "benzo", (30,), (1,), 0.30),
    D("00555097302", "stimulant", (30,), (1, 2), 1.10, min_age=6, weight=2),
    D("00555097402", "stimulant", (30,), (1, 2), 1.20, min_age=6, weight=2),
    D("00591271701", "stimulant", (30,), (1,), 2.00, min_age=6),
    D("00591271801", "stimulant", (30,), (1,), 2.50, min_age=6),
    D("59417010410", "stimulant", (30,), (1,), 2.80, min_age=6),
    D("00093007301", "sedative", (30,), (1,), 0.20, weight=2),
    D("00071101568", "sedative", (30,), (2, 3), 0.60),
    D("00591551301", "sedative", (7, 10), (3, 4), 0.30, chronic=False),
    D("00093505698", "maintenance", (30, 90), (1,), 0.12, weight=4),
    D("00093505798", "maintenance", (30, 90), (1,), 0.15, weight=3),
    D("00591377430", "maintenance", (30, 90), (1,), 0.15, weight=2),
    D("00093715398", "maintenance", (30, 90), (1,), 0.08, weight=2),
    D("00093104801", "maintenance", (30, 90), (2, 3, 4), 0.06, weight=3),
    D("00093104901", "maintenance", (30, 90), (1, 2), 0.10, weight=2),
    D("68180051401", "maintenance", (30, 90), (1,), 0.07, weight=3),
    D("68180051501", "maintenance", (30, 90), (1, 2), 0.09, weight=2),
    D("00093736498", "maintenance", (30, 90), (1, 2), 0.15, weight=2),
    D("00093316798", "maintenance", (30, 90), (1,), 0.07, weight=2),
    D("00093316898", "maintenance", (30, 90), (1,), 0.08),
    D("00378459201", "maintenance", (30, 90), (1, 2), 0.35, weight=2),
    D("00172208380", "maintenance", (30, 90), (1,), 0.05),
    D("00378180201", "maintenance", (30, 90), (1,), 0.25, weight=2),
    D("00378180501", "maintenance", (30, 90), (1,), 0.30),
    D("62175011843", "maintenance", (30, 90), (1, 2), 0.20, weight=2),
    D("00093501198", "maintenance", (30, 90), (1,), 0.25),
    D("16714061201", "maintenance", (30, 90), (1, 2), 0.12, weight=2, min_age=12),
    D("00093585101", "maintenance", (30, 90), (1,), 0.12, weight=2, min_age=12),
    D("00093719201", "maintenance", (30, 90), (1, 2), 0.10, min_age=12),
    D("00591354330", "maintenance", (30, 90), (1, 2), 0.60),
    D("00228265511", "maintenance", (30,), (3, 6, 9), 0.12, weight=2),
    D("00173068220", "maintenance", (30,), (8.5 / 30,), 3.80, min_age=4, weight=2),
    D("00093742656", "maintenance", (30, 90), (1,), 0.15, min_age=2),
    D("00003089421", "maintenance", (30, 90), (2,), 1.40, min_age=40),
    D("00006027731", "maintenance", (30, 90), (1,), 2.50, min_age=30),
    D("00088221905", "maintenance", (30,), (0.5,), 5.00, min_age=12),
    D("00093172101", "maintenance", (30,), (1,), 0.10, min_age=40),
    D("00054829725", "maintenance", (30, 90), (1, 2), 0.06, min_age=40),
    D("00093001101", "maintenance", (30,), (0.3,), 1.10),
    D("00093310905", "acute", (7, 10), (3,), 0.12, chronic=False, min_age=1, weight=4),
    D("00093715305", "acute", (5,), (1.2,), 0.90, chronic=False, min_age=1, weight=3),
    D("00093314505", "acute", (7, 10), (4,), 0.20, chronic=False, min_age=1, weight=2),
    D("00781523831", "acute", (3, 5), (2, 3), 0.35, chronic=False, min_age=2),
    D("00591565401", "acute", (7, 10), (2, 3), 0.10, chronic=False, weight=2),
    D("00904585561", "acute", (10,), (3,), 0.12, chronic=False, weight=2, min_age=12),
    D("00603590221", "acute", (6,), (3.5,), 0.35, chronic=False),
    D("00591540201", "acute", (5,), (4, 6), 0.08, chronic=False),
    D("00093214401", "acute", (1,), (1,), 2.50, chronic=False, min_age=12),
    D("00047050124", "acute", (5, 7), (2,), 0.90, chronic=False, min_age=12),
)

DRUG_BY_NDC = {d.ndc: d for d in DRUG_USES}
# Who writes which kind of prescription for adults.
PRESCRIBERS_BY_USE: dict[str, tuple[str, ...]] = {
    "opioid": ("Family Medicine", "Internal Medicine", "Orthopedic Surgery"),
    "benzo": ("Psychiatry", "Family Medicine", "Internal Medicine"),
    "stimulant": ("Psychiatry", "Pediatrics", "Family Medicine"),
    "sedative": ("Family Medicine", "Internal Medicine", "Psychiatry"),
    "maintenance": ("Family Medicine", "Internal Medicine", "Cardiology"),
    "acute": ("Family Medicine", "Internal Medicine", "Dermatology", "Urology",
              "Obstetrics & Gynecology"),
}  # fmt: skip
# Who writes for minors: (any other drug, stimulants).
PEDIATRIC_PRESCRIBERS = (("Pediatrics", "Family Medicine"), ("Pediatrics", "Psychiatry"))
DISPENSING_FEE = 2.50

# --------------------------------------------------------------------------- people

FIRST_NAMES_F = (
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica", "Sarah",
    "Karen", "Lisa", "Nancy", "Betty", "Sandra", "Margaret", "Ashley", "Kimberly", "Emily",
    "Donna", "Michelle", "Carol", "Amanda", "Melissa", "Deborah", "Stephanie", "Rebecca", "Laura",
    "Sharon", "Cynthia", "Kathleen", "Amy", "Angela", "Shirley", "Brenda", "Emma", "Anna", "Pamela",
    "Nicole", "Samantha", "Katherine", "Christine", "Helen", "Debra", "Rachel", "Carolyn", "Janet",
    "Maria", "Olivia", "Heather", "Sophia", "Grace", "Chloe", "Isabella", "Ava", "Mia",
)  # fmt: skip
FIRST_NAMES_M = (
    "James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph", "Thomas",
    "Christopher", "Charles", "Daniel", "Matthew", "Anthony", "Mark", "Donald", "Steven", "Andrew",
    "Paul", "Joshua", "Kenneth", "Kevin", "Brian", "George", "Timothy", "Ronald", "Jason", "Edward",
    "Jeffrey", "Ryan", "Jacob", "Gary", "Nicholas", "Eric", "Jonathan", "Stephen", "Larry",
    "Justin", "Scott", "Brandon", "Benjamin", "Samuel", "Gregory", "Alexander", "Patrick", "Frank",
    "Raymond", "Jack", "Dennis", "Jerry", "Ethan", "Noah", "Liam", "Lucas", "Mason",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark",
    "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres",
    "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell",
    "Mitchell", "Carter", "Roberts", "Gomez", "Phillips", "Evans", "Turner", "Diaz", "Parker",
    "Cruz", "Edwards", "Collins", "Reyes", "Stewart", "Morris", "Morales", "Murphy", "Cook",
    "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson", "Bailey", "Reed", "Kelly",
    "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson", "Watson", "Brooks", "Chavez", "Wood",
    "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes", "Price", "Alvarez", "Castillo",
    "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "O'Brien", "McCarthy", "Schmidt",
)  # fmt: skip
# A regional plan: members and providers live in these states (weights sum to 1).
STATES = ("OH", "PA", "MI", "IN", "KY", "WV")
STATE_WEIGHTS = (0.30, 0.25, 0.18, 0.12, 0.09, 0.06)
TOWNS = (
    "Riverside", "Lakeview", "Fairview", "Maple Grove", "Cedar Hill", "Oakwood", "Springfield",
    "Greenville", "Franklin", "Clinton", "Madison", "Georgetown", "Salem", "Ashland", "Milton",
)  # fmt: skip
ORGANIZATION_SUFFIX = {
    "Clinical Laboratory": "Clinical Laboratory",
    "Diagnostic Radiology": "Imaging Center",
    "Ambulatory Surgical Center": "Surgery Center",
}
PHARMACY_BRANDS = ("Community", "Family", "Main Street", "Hometown", "Valley", "Medicine Shoppe")

# --------------------------------------------------------------------------- planting

# Who bills each NCCI pair when a scheme plants it (both codes are that specialty's services).
NCCI_BILLERS: dict[tuple[str, str], str] = {
    ("80053", "80048"): "Clinical Laboratory",
    ("80053", "82947"): "Clinical Laboratory",
    ("85025", "85027"): "Clinical Laboratory",
    ("81001", "81003"): "Clinical Laboratory",
    ("93000", "93010"): "Cardiology",
    ("93000", "93005"): "Internal Medicine",
    ("93306", "93308"): "Cardiology",
    ("90837", "90834"): "Clinical Psychology",
    ("45380", "45378"): "Ambulatory Surgical Center",
    ("45385", "45378"): "Ambulatory Surgical Center",
    ("29880", "29881"): "Ambulatory Surgical Center",
    ("20610", "20605"): "Orthopedic Surgery",
    ("97530", "97140"): "Physical Therapy",
    ("57454", "57452"): "Obstetrics & Gynecology",
    ("71046", "71045"): "Diagnostic Radiology",
    ("11102", "17110"): "Dermatology",
}
# Gender-inconsistent claims: (code, wrong gender for it, specialty that bills it).
GENDER_MISMATCHES: tuple[tuple[str, str, str], ...] = (
    ("76801", "M", "Diagnostic Radiology"),
    ("76805", "M", "Diagnostic Radiology"),
    ("G0101", "M", "Family Medicine"),
    ("57454", "M", "Obstetrics & Gynecology"),
    ("55700", "F", "Urology"),
    ("G0103", "F", "Family Medicine"),
    ("55250", "F", "Urology"),
    ("G0102", "F", "Urology"),
)
# Age-inconsistent claims: (code, member age range on the day far outside the code's, specialty).
AGE_MISMATCHES: tuple[tuple[str, int, int, str], ...] = (
    ("99381", 25, 70, "Pediatrics"),
    ("99391", 30, 75, "Family Medicine"),
    ("G0438", 20, 50, "Internal Medicine"),
    ("G0439", 25, 55, "Family Medicine"),
    ("99394", 40, 80, "Family Medicine"),
    ("99387", 20, 45, "Internal Medicine"),
    ("90460", 30, 70, "Family Medicine"),
    ("99385", 55, 85, "Family Medicine"),
)
# Visits billed for members after their death: (code, specialty).
AFTER_DEATH_VISITS: tuple[tuple[str, str], ...] = (
    ("99213", "Family Medicine"),
    ("99213", "Internal Medicine"),
    ("99212", "Cardiology"),
    ("80053", "Clinical Laboratory"),
    ("71046", "Diagnostic Radiology"),
)
# Diagnoses only planted lines use (the writer's vocabulary must know them).
PLANT_DX = ("Z01.89",)
# Impossible days: the timed service billed to one member after another, (code, units).
IMPOSSIBLE_DAY_SERVICE = {"Clinical Psychology": ("90837", 1), "Physical Therapy": ("97110", 4)}
