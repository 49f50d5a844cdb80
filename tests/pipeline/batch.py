"""Two small hand-made batches whose findings are known claim by claim.

Batch one plants a duplicate claim, a service after death, an excluded provider, a fill after
death and two quality errors (a bad NPI check digit, an unknown member). Batch two, landed on top,
repeats batch one's first claim (a duplicate only the history shows) and refills batch one's
opioid a week into a 30-day supply (an early refill only the history shows).
"""

from __future__ import annotations

import csv
from pathlib import Path

from fwa_pipeline.npi import make_npis

P1, P2, P3, PHARMACY, PRESCRIBER = (
    str(n) for n in make_npis([111111111, 222222222, 333333333, 444444444, 555555555])
)
BAD_NPI = P1[:9] + str((int(P1[9]) + 1) % 10)
OXYCODONE = "00406055201"
AMOXICILLIN = "00093310905"

Rows = dict[str, list[dict[str, str]]]

PROVIDERS = [
    {
        "provider_id": P1,
        "name": "Dr. One",
        "provider_type": "individual",
        "specialty": "Family Medicine",
        "state": "OH",
        "excluded": "false",
        "exclusion_date": "",
    },
    {
        "provider_id": P2,
        "name": "Dr. Two",
        "provider_type": "individual",
        "specialty": "Family Medicine",
        "state": "OH",
        "excluded": "false",
        "exclusion_date": "",
    },
    {
        "provider_id": P3,
        "name": "Dr. Three",
        "provider_type": "individual",
        "specialty": "Family Medicine",
        "state": "OH",
        "excluded": "true",
        "exclusion_date": "2023-01-01",
    },
    {
        "provider_id": PHARMACY,
        "name": "Main Street Pharmacy",
        "provider_type": "pharmacy",
        "specialty": "",
        "state": "OH",
        "excluded": "false",
        "exclusion_date": "",
    },
    {
        "provider_id": PRESCRIBER,
        "name": "Dr. Rx",
        "provider_type": "individual",
        "specialty": "Pain Medicine",
        "state": "OH",
        "excluded": "false",
        "exclusion_date": "",
    },
]
MEMBERS = [
    {
        "member_id": "M1",
        "first_name": "Ann",
        "last_name": "Able",
        "date_of_birth": "1960-01-01",
        "gender": "F",
        "state": "OH",
        "date_of_death": "",
    },
    {
        "member_id": "M2",
        "first_name": "Bob",
        "last_name": "Baker",
        "date_of_birth": "1950-06-01",
        "gender": "M",
        "state": "OH",
        "date_of_death": "2024-01-15",
    },
    {
        "member_id": "M3",
        "first_name": "Cy",
        "last_name": "Cole",
        "date_of_birth": "1990-03-03",
        "gender": "M",
        "state": "OH",
        "date_of_death": "",
    },
]


def medical(
    claim_id: str, member: str, provider: str, date: str, cpt: str = "99213", amount: str = "100.00"
) -> dict[str, str]:
    return {
        "claim_id": claim_id,
        "member_id": member,
        "provider_id": provider,
        "service_date": date,
        "cpt_code": cpt,
        "modifier": "",
        "diagnosis_code": "E11.9",
        "units": "1",
        "place_of_service": "11",
        "amount_billed": amount,
        "amount_paid": "80.00",
    }


def pharmacy(
    claim_id: str,
    member: str,
    date: str,
    ndc: str = OXYCODONE,
    quantity: str = "60",
    days: str = "30",
) -> dict[str, str]:
    return {
        "claim_id": claim_id,
        "member_id": member,
        "prescriber_id": PRESCRIBER,
        "pharmacy_id": PHARMACY,
        "fill_date": date,
        "ndc_code": ndc,
        "quantity": quantity,
        "days_supply": days,
        "refill_number": "0",
        "amount_billed": "45.00",
        "amount_paid": "40.00",
    }


def batch_one() -> Rows:
    return {
        "providers.csv": PROVIDERS,
        "members.csv": MEMBERS,
        "medical_claims.csv": [
            medical("MC-1", "M1", P1, "2024-02-01"),
            medical("MC-2", "M1", P1, "2024-02-01"),  # duplicate of MC-1
            medical("MC-3", "M2", P1, "2024-02-20"),  # after M2's death
            medical("MC-4", "M3", P3, "2024-02-05"),  # excluded provider
            medical("MC-5", "M3", BAD_NPI, "2024-02-06"),  # quality error: NPI check digit
            medical("MC-6", "M9", P2, "2024-02-07"),  # quality error: unknown member
            medical("MC-7", "M3", P2, "2024-02-08"),
        ],
        "pharmacy_claims.csv": [
            pharmacy("RX-1", "M1", "2024-02-03"),
            pharmacy(
                "RX-2", "M2", "2024-02-10", ndc=AMOXICILLIN, quantity="20", days="10"
            ),  # after death
        ],
        "labels.csv": [
            {"claim_id": "MC-2", "rule_id": "RULE-MED-001"},
            {"claim_id": "MC-3", "rule_id": "RULE-MED-006"},
            {"claim_id": "MC-4", "rule_id": "RULE-MED-009"},
            {"claim_id": "RX-2", "rule_id": "RULE-RX-008"},
        ],
    }


def batch_two() -> Rows:
    return {
        "medical_claims.csv": [
            medical("MC-11", "M1", P1, "2024-02-01"),  # a third copy of MC-1, a batch later
            medical("MC-12", "M3", P2, "2024-03-01"),
        ],
        "pharmacy_claims.csv": [
            pharmacy("RX-11", "M1", "2024-02-10"),  # a week into RX-1's 30 days
        ],
    }


def write(rows: Rows, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, file_rows in rows.items():
        with (directory / name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(file_rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(file_rows)
    return directory
