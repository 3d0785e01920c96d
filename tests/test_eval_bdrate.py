"""BD-rate through the bjontegaard package: its README example, exact cases, and lower-is-better metrics."""

from __future__ import annotations

import pytest

bd = pytest.importorskip("bjontegaard")

from semzip.errors import InvalidInputError
from semzip.eval.bdrate import bd_quality, bd_rate, bd_table, rd_plot

# The bjontegaard README's example (x265 presets).
RATE_A = [9487.76, 4593.60, 2486.44, 1358.24]
PSNR_A = [40.037, 38.615, 36.845, 34.851]
RATE_T = [9787.80, 4469.00, 2451.52, 1356.24]
PSNR_T = [40.121, 38.651, 36.970, 34.987]


@pytest.mark.parametrize("method", ["akima", "pchip"])
def test_readme_example_matches_package(method):
    ours = bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T, method=method)
    assert ours == pytest.approx(bd.bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T, method=method), abs=1e-9)
    assert bd_quality(RATE_A, PSNR_A, RATE_T, PSNR_T, method=method) == pytest.approx(
        bd.bd_psnr(RATE_A, PSNR_A, RATE_T, PSNR_T, method=method), abs=1e-9)


def test_readme_example_values():
    # values bjontegaard 1.3.0 returns for the README example (Akima): -4.4252 %, +0.1194 dB
    assert bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T) == pytest.approx(-4.4252, abs=1e-4)
    assert bd_quality(RATE_A, PSNR_A, RATE_T, PSNR_T) == pytest.approx(0.1194, abs=1e-4)


def test_exact_ten_percent_saving_higher_is_better():
    rates = [0.1, 0.2, 0.4, 0.8]
    psnr = [28.0, 30.5, 33.0, 35.0]
    assert bd_rate(rates, psnr, [0.9 * r for r in rates], psnr) == pytest.approx(-10.0, abs=1e-9)
    assert bd_quality(rates, psnr, rates, [p + 1 for p in psnr]) == pytest.approx(1.0, abs=1e-9)


def test_lower_is_better_sign_convention():
    rates = [0.1, 0.2, 0.4, 0.8]
    lpips = [0.40, 0.30, 0.20, 0.12]  # falls as rate grows
    # same LPIPS at 10% fewer bits: a saving, negative BD-rate, as for PSNR
    assert bd_rate(rates, lpips, [0.9 * r for r in rates], lpips, higher_is_better=False) == pytest.approx(-10.0)
    # 10% more bits for the same LPIPS: positive
    assert bd_rate(rates, lpips, [1.1 * r for r in rates], lpips, higher_is_better=False) == pytest.approx(10.0)
    # lower LPIPS at the same rate is better: BD-quality is oriented so that this is positive
    assert bd_quality(rates, lpips, rates, [v - 0.05 for v in lpips], higher_is_better=False) == pytest.approx(0.05)
    with pytest.raises(InvalidInputError):  # declaring LPIPS higher-is-better makes the curve non-monotone
        bd_rate(rates, lpips, rates, lpips, higher_is_better=True)


def test_bd_table_and_plot(tmp_path):
    curves = {"jpeg": (RATE_A, PSNR_A), "test": (RATE_T, PSNR_T), "one": ([1.0], [30.0])}
    t = bd_table(curves, "jpeg")
    assert t["test"]["bd_rate"] == pytest.approx(-4.4252, abs=1e-4)
    assert "reason" in t["one"]
    paths = rd_plot(curves, "PSNR", tmp_path / "rd_psnr")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in paths)
    assert "<svg" in paths[1].read_text()
