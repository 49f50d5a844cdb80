"""What the kept peer statistics depend on besides the claims, and how they are kept."""

from __future__ import annotations

import pandas as pd

from fwa_pipeline.domain.config import default_config
from fwa_pipeline.domain.rules import registered
from fwa_pipeline.reference import load_default_reference
from fwa_pipeline.steps.peer_statistics import PeerStatistics, compared_rules, fingerprint


def test_every_peer_rule_with_phases_is_compared_from_kept_statistics() -> None:
    assert set(compared_rules(default_config())) == {
        "RULE-MED-005",
        "RULE-MED-010",
        "RULE-MED-011",
        "RULE-MED-012",
        "RULE-RX-010",
    }


def test_a_fingerprint_changes_with_the_thresholds_and_reference_the_statistics_read() -> None:
    config = default_config()
    reference = load_default_reference()
    phases = registered("RULE-MED-005").phases
    assert phases is not None
    before = fingerprint("RULE-MED-005", phases, config, reference)

    # The same rows in another order (the store returns them unordered): the same statistics.
    shuffled = {**reference, "cpt_reference": reference["cpt_reference"].iloc[::-1]}
    assert fingerprint("RULE-MED-005", phases, config, shuffled) == before
    # A threshold compare alone reads changes nothing; one the statistics read does.
    rules = dict(config.rules)
    params = rules["RULE-MED-005"]
    rules["RULE-MED-005"] = params.model_copy(
        update={"thresholds": {**params.thresholds, "min_robust_z": 9.0}}
    )
    assert (
        fingerprint("RULE-MED-005", phases, config.model_copy(update={"rules": rules}), reference)
        == before
    )
    rules["RULE-MED-005"] = params.model_copy(
        update={"thresholds": {**params.thresholds, "high_levels": [5]}}
    )
    assert (
        fingerprint("RULE-MED-005", phases, config.model_copy(update={"rules": rules}), reference)
        != before
    )
    # A code's E/M level read through enrichment.
    cpt = reference["cpt_reference"].copy()
    cpt.loc[cpt["em_level"].notna().idxmax(), "em_level"] = 1
    changed = {**reference, "cpt_reference": cpt}
    assert fingerprint("RULE-MED-005", phases, config, changed) != before


def test_kept_statistics_read_back_as_they_were_written() -> None:
    phases = registered("RULE-MED-011").phases
    assert phases is not None
    claims = pd.DataFrame(
        {
            "provider_id": ["P1", "P1", "P2"],
            "member_id": ["M1", "M1", "M2"],
            "amount_billed": [10.25, 4.75, float("nan")],
        }
    )
    found = phases.aggregate(claims, default_config().rules["RULE-MED-011"])
    kept = PeerStatistics({"RULE-MED-011": found}, {"RULE-MED-011": "f"})

    again = PeerStatistics.of(kept.frames())

    assert again.fingerprints == {"RULE-MED-011": "f"}
    read = again.aggregates["RULE-MED-011"]
    pd.testing.assert_frame_equal(read.totals, found.totals)
    assert read.pairs is not None and found.pairs is not None
    pd.testing.assert_frame_equal(read.pairs, found.pairs)
    assert read.finished().to_dict("index") == {
        "P1": {"lines": 2, "billed_cents": 1500, "members": 1},
        "P2": {"lines": 1, "billed_cents": 0, "members": 1},
    }
