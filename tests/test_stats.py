"""Statistics over seeds, checked against values computed by hand and published t tables."""

import math

import pytest

from resnetlab.stats import compare, difference, summarize, t_cdf, t_quantile


@pytest.mark.parametrize("df,t", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423)])
def test_t_quantile_matches_the_published_table(df, t):
    assert t_quantile(0.975, df) == pytest.approx(t, abs=1e-4)


def test_t_cdf_is_symmetric_and_matches_known_values():
    assert t_cdf(0.0, 3) == 0.5
    assert t_cdf(2.0, 5) == pytest.approx(0.94903, abs=1e-5)
    assert t_cdf(-2.0, 5) == pytest.approx(1 - 0.94903, abs=1e-5)
    assert t_quantile(0.975, 2.5) == pytest.approx(-t_quantile(0.025, 2.5))


def test_summary_is_mean_and_sample_std():
    s = summarize([0.10, 0.12, 0.14])
    assert s.mean == pytest.approx(0.12) and s.std == pytest.approx(0.02) and s.n == 3
    assert s.pct() == "12.00 ± 2.00%" and summarize([0.0703]).pct() == "7.03%"
    assert s.to_dict()["values"] == [0.10, 0.12, 0.14]


def test_paired_interval_by_hand_and_not_resolved_when_it_contains_zero():
    # differences -0.03, -0.02, -0.01: mean -0.02, sd 0.01, half-width 4.3027 * 0.01 / sqrt(3) = 0.02484
    d = difference([0.10, 0.12, 0.11], [0.13, 0.14, 0.12])
    assert d.method == "paired t" and d.diff == pytest.approx(-0.02)
    assert (d.low, d.high) == pytest.approx((-0.02 - 0.024841, -0.02 + 0.024841), abs=1e-6)
    assert not d.resolved and (d.agree, d.of) == (3, 3)
    text, _ = compare("resnet56", [0.10, 0.12, 0.11], "resnet20", [0.13, 0.14, 0.12])
    assert text.startswith("not resolved at this budget: resnet56 11.00 ± 1.00% vs resnet20 13.00 ± 1.00%")
    assert "3 of 3 seeds have resnet56 lower" in text


def test_welch_interval_by_hand_and_a_resolved_verdict():
    # a = 1..4, b = 2, 4, 6: se^2 = (5/3)/4 + 4/3 = 1.75; df = 1.75^2 / ((5/12)^2/3 + (4/3)^2/2) = 3.2347
    d = difference([1, 2, 3, 4], [2, 4, 6])
    df = 1.75 ** 2 / ((5 / 12) ** 2 / 3 + (4 / 3) ** 2 / 2)
    half = t_quantile(0.975, df) * math.sqrt(1.75)
    assert d.method == "Welch t" and d.diff == -1.5
    assert (d.low, d.high) == pytest.approx((-1.5 - half, -1.5 + half))
    assert 2.9 < t_quantile(0.975, df) < 3.2      # between the table's df 3 (3.182) and df 4 (2.776)
    text, d = compare("resnet20", [0.070, 0.071, 0.069], "plain20", [0.090, 0.094, 0.092])
    assert d.resolved and text.startswith("resnet20 has the lower error")


def test_one_seed_is_never_resolved():
    text, d = compare("a", [0.1], "b", [0.3])
    assert not d.resolved and d.method == "one seed" and text.startswith("not resolved at this budget")
