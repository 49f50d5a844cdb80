"""National Provider Identifier check digits (CMS NPI standard: ISO/IEC 7812 Luhn with the
card-issuer prefix 80840).

An NPI is 9 identifier digits followed by a Luhn check digit computed over ``80840`` + those 9
digits. The prefix always contributes 24 to the Luhn sum, so only the 9 digits need summing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Luhn sum contributed by the "80840" prefix: 8 + 0*2 + 8 + 4*2 + 0 (the standard's constant 24).
_PREFIX_SUM = 24
# Luhn doubles every second digit counting leftwards from the check digit: identifier digits
# 1, 3, 5, 7 and 9.
_DOUBLED = np.array([True, False, True, False, True, False, True, False, True])
_DOUBLE_DIGIT_SUM = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.int64)  # digit sum of 2*d


def _check_digits(first9: np.ndarray) -> np.ndarray:
    """Check digits for an (n, 9) integer array of identifier digits."""
    contributions = np.where(_DOUBLED, _DOUBLE_DIGIT_SUM[first9], first9)
    total = contributions.sum(axis=1) + _PREFIX_SUM
    return (10 - total % 10) % 10


def npi_check_digit(first9: str) -> int:
    """The Luhn check digit for the 9-digit identifier part of an NPI."""
    if len(first9) != 9 or not first9.isascii() or not first9.isdigit():
        raise ValueError("an NPI identifier part is exactly 9 digits")
    digits = np.frombuffer(first9.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    return int(_check_digits(digits.reshape(1, 9))[0])


def is_valid_npi(value: str) -> bool:
    """True when ``value`` is 10 ASCII digits whose last digit is the NPI Luhn check digit."""
    if not isinstance(value, str) or len(value) != 10:
        return False
    if not value.isascii() or not value.isdigit():
        return False
    return npi_check_digit(value[:9]) == int(value[9])


def valid_npi_mask(values: pd.Series) -> pd.Series:
    """Vectorised :func:`is_valid_npi`: a boolean Series aligned with ``values`` (missing and
    non-string cells are invalid)."""
    strings = values.astype("string")
    shaped = strings.str.fullmatch(r"[0-9]{10}").fillna(False).to_numpy(dtype=bool)
    result = np.zeros(len(values), dtype=bool)
    if shaped.any():
        joined = "".join(strings.to_numpy(dtype=object)[shaped]).encode("ascii")
        digits = (np.frombuffer(joined, dtype=np.uint8).astype(np.int64) - 48).reshape(-1, 10)
        result[shaped] = _check_digits(digits[:, :9]) == digits[:, 9]
    return pd.Series(result, index=values.index, dtype=bool)


def make_npis(identifiers: np.ndarray) -> np.ndarray:
    """Valid NPIs (as strings) for an integer array of 9-digit identifiers (100000000-999999999)."""
    ids = np.asarray(identifiers, dtype=np.int64)
    if ids.size and (ids.min() < 100_000_000 or ids.max() > 999_999_999):
        raise ValueError("NPI identifiers are 9-digit numbers")
    powers = 10 ** np.arange(8, -1, -1, dtype=np.int64)
    digits = (ids[:, None] // powers) % 10
    full = ids * 10 + _check_digits(digits)
    return full.astype(str)
