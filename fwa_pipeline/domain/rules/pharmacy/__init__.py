"""The pharmacy rule family, RULE-RX-001 .. RULE-RX-010. Importing this package registers them.

- ``supply``: rules over a member's supply on hand (early refill, high opioid dose, opioid with
  benzodiazepine), built on a per-member supply timeline.
- ``shopping``: doctor and pharmacy shopping over a rolling window.
- ``fill_checks``: checks of one fill against its references (quantity limit, illegal refill,
  excluded or invalid prescriber, fill after death) and duplicate fills.
- ``peers``: the pharmacy outlier among its peers.
"""

from __future__ import annotations

from fwa_pipeline.domain.rules.pharmacy import fill_checks, peers, shopping, supply

__all__ = ["fill_checks", "peers", "shopping", "supply"]
