"""Detection quality against ground truth: per-rule precision and recall of rule hits versus the
``(claim_id, rule_id)`` labels a demo batch ships."""

from __future__ import annotations

import pandas as pd

COLUMNS = ["rule_id", "labelled", "hits", "true_positives", "precision", "recall"]


def precision_recall(hits: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """One row per rule seen in either frame. Both need ``claim_id`` and ``rule_id``; a claim hit
    twice by one rule (say, as member and as provider finding) counts once."""
    found = hits[["claim_id", "rule_id"]].drop_duplicates()
    truth = labels[["claim_id", "rule_id"]].drop_duplicates()
    both = found.merge(truth, on=["claim_id", "rule_id"], how="inner")
    table = (
        pd.DataFrame(
            {
                "labelled": truth.groupby("rule_id").size(),
                "hits": found.groupby("rule_id").size(),
                "true_positives": both.groupby("rule_id").size(),
            }
        )
        .fillna(0)
        .astype(int)
    )
    table["precision"] = (table["true_positives"] / table["hits"]).where(table["hits"] > 0)
    table["recall"] = (table["true_positives"] / table["labelled"]).where(table["labelled"] > 0)
    return (
        table.rename_axis("rule_id")
        .reset_index()[COLUMNS]
        .sort_values("rule_id", ignore_index=True)
    )
