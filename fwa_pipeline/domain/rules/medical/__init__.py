"""The medical rule family, RULE-MED-001 .. RULE-MED-012. Importing this package registers them.

* ``same_day``: edits on a member's or provider's lines of one day (duplicates, NCCI pairs, MUE,
  impossible day).
* ``line_edits``: a line against its member, provider and code reference (death, gender, age,
  exclusion) or its code's amounts.
* ``peers``: a provider against its specialty peers (E/M upcoding, modifier overuse, billing).
"""

from __future__ import annotations

from fwa_pipeline.domain.rules.medical import line_edits, peers, same_day  # registers the rules

__all__ = ["line_edits", "peers", "same_day"]
