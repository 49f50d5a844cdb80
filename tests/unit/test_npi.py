"""NPI check digits: the standard's worked example, the scalar/vectorised twins agreeing, and
malformed input being invalid rather than an error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fwa_pipeline.npi import is_valid_npi, make_npis, npi_check_digit, valid_npi_mask


def test_cms_worked_example() -> None:
    # The CMS NPI check-digit document's example: 123456789 -> check digit 3.
    assert npi_check_digit("123456789") == 3
    assert is_valid_npi("1234567893")


@pytest.mark.parametrize("value", ["1234567890", "123456789", "12345678931", "12345678a3", ""])
def test_invalid_values(value: str) -> None:
    assert not is_valid_npi(value)


def test_every_wrong_check_digit_is_rejected() -> None:
    assert [d for d in range(10) if is_valid_npi(f"987654321{d}")] == [npi_check_digit("987654321")]


def test_check_digit_needs_nine_digits() -> None:
    with pytest.raises(ValueError):
        npi_check_digit("12345678")


def test_vectorised_mask_matches_scalar() -> None:
    rng = np.random.default_rng(7)
    good = make_npis(rng.integers(100_000_000, 1_000_000_000, 500))
    # Flip the check digit of every other NPI.
    bad = [s[:9] + str((int(s[9]) + 1) % 10) for s in good[::2]]
    cells = [*good, *bad, None, "12345", "١٢٣٤٥٦٧٨٩٣", " 1234567893"]
    values = pd.Series(cells, index=range(5, 5 + len(cells)))
    mask = valid_npi_mask(values)
    assert mask.index.equals(values.index)
    assert mask.tolist() == [isinstance(v, str) and is_valid_npi(v) for v in values]
    assert mask.sum() == len(good)


def test_make_npis_rejects_short_identifiers() -> None:
    with pytest.raises(ValueError):
        make_npis(np.array([12345678]))
