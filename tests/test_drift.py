"""Data drift statistics (DESIGN.md §4, §11): the numbers match scipy, the verdicts are sane.

Statistics are checked against scipy on random data; PSI on cases worked out by hand; the
verdict on injected shifts, on a million rows of one distribution, and on bad input.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from scipy import stats

from retrain.core.config import DriftConfig, load_model
from retrain.core.errors import ConfigError, DataError
from retrain.decide import drift
from retrain.decide.drift import drift_report, format_table, prediction_psi

SECTION_11_KEYS = {"kind", "test", "statistic", "p_value", "psi", "drifted"}


def _one(ref, cur, kind=None, **config) -> dict:
    kinds = {"x": kind} if kind else None
    rep = drift_report(
        pd.DataFrame({"x": ref}),
        pd.DataFrame({"x": cur}),
        kinds=kinds,
        config=DriftConfig(**config),
    )
    return rep.features["x"]


# --------------------------------------------------------------------------- numeric vs scipy
KS_CASES = {
    "tiny, exact": (12, 17, 0.0, None),
    "small equal sizes, exact": (300, 300, 0.2, None),
    "unequal sizes, exact": (1000, 1500, 0.1, None),
    "near the exact limit": (8000, 10_000, 0.03, None),
    "heavy ties, exact": (2000, 2500, 0.0, 0),  # rounded to integers: a handful of values
    "ties, asymptotic": (20_000, 30_000, 0.02, 1),
    "large, asymptotic, no shift": (60_000, 50_000, 0.0, None),
    "large, asymptotic, p borderline": (60_000, 50_000, 0.012, None),
    "large, asymptotic, p tiny": (100_000, 80_000, 0.1, None),
}


@pytest.mark.parametrize("case", list(KS_CASES))
def test_ks_statistic_and_p_value_equal_scipy(case):
    n1, n2, shift, decimals = KS_CASES[case]
    rng = np.random.default_rng(sorted(KS_CASES).index(case))
    a = rng.normal(size=n1)
    b = rng.normal(shift, 1.0, size=n2)
    if decimals is not None:
        a, b = np.round(a * 2, decimals), np.round(b * 2, decimals)
    want = stats.ks_2samp(a, b, method="auto")
    got = _one(a, b)
    assert got["test"] == "ks" and got["kind"] == "numeric"
    assert abs(got["statistic"] - want.statistic) <= 1e-12
    assert abs(got["p_value"] - want.pvalue) <= 1e-9
    if want.pvalue > 1e-6:
        assert got["p_value"] == pytest.approx(want.pvalue, rel=1e-9)


def test_wasserstein_distance_equals_scipy():
    rng = np.random.default_rng(7)
    a, b = rng.exponential(size=3000), np.round(rng.exponential(1.3, size=4100), 2)
    got = _one(a, b)
    assert got["wasserstein"] == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)


def test_identical_constant_columns_do_not_drift():
    got = _one(np.full(500, 3.0), np.full(700, 3.0))
    assert got["statistic"] == 0.0 and got["p_value"] == 1.0 and got["psi"] == 0.0
    assert not got["drifted"]


# --------------------------------------------------------------------------- PSI by hand
def test_numeric_psi_uses_ten_reference_quantile_bins():
    ref = np.arange(1000.0)  # deciles: 0-99, 100-199, ... exactly 100 rows per bin
    cur = np.concatenate(
        [np.arange(0.0, 100.0).repeat(6)[:550], np.arange(150.0, 1000.0, 100).repeat(50)]
    )  # 55% in the first decile, 5% in each of the others
    assert cur.size == 1000
    expected = 0.45 * math.log(0.55 / 0.1) + 9 * (0.05 - 0.1) * math.log(0.05 / 0.1)
    assert _one(ref, cur)["psi"] == pytest.approx(expected, rel=1e-12)


def test_empty_bins_are_floored_at_epsilon():
    ref = np.arange(1000.0)
    cur = np.arange(100.0)  # every current row in the first decile: nine empty bins
    eps = 1e-4
    expected = 0.9 * math.log(1 / 0.1) + 9 * (eps - 0.1) * math.log(eps / 0.1)
    assert _one(ref, cur)["psi"] == pytest.approx(expected, rel=1e-12)
    assert _one(ref, cur, psi_epsilon=1e-3)["psi"] == pytest.approx(
        0.9 * math.log(10) + 9 * (1e-3 - 0.1) * math.log(1e-3 / 0.1), rel=1e-12
    )


def test_a_reference_with_few_distinct_values_gets_one_bin_per_value():
    ref = np.array([0.0] * 50 + [1.0] * 30 + [2.0] * 20)
    cur = np.array([0.0] * 20 + [1.0] * 30 + [2.0] * 50)
    expected = (0.2 - 0.5) * math.log(0.2 / 0.5) + (0.5 - 0.2) * math.log(0.5 / 0.2)
    assert _one(ref, cur)["psi"] == pytest.approx(expected, rel=1e-12)


def test_categorical_psi_over_levels():
    ref = ["a"] * 50 + ["b"] * 50
    cur = ["a"] * 80 + ["b"] * 20
    expected = 0.3 * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    got = _one(ref, cur)
    assert got["kind"] == "categorical" and got["test"] == "chi2"
    assert got["psi"] == pytest.approx(expected, rel=1e-12)


def test_prediction_psi_for_labels_and_for_scores():
    assert prediction_psi(["sun", "rain"] * 50, ["sun", "rain"] * 50) == 0.0
    labels = prediction_psi(["sun"] * 50 + ["rain"] * 50, ["sun"] * 80 + ["rain"] * 20)
    assert labels == pytest.approx(0.3 * math.log(1.6) + 0.3 * math.log(2.5), rel=1e-12)
    # integer classes are levels too: a class never predicted before counts
    assert prediction_psi([0, 1] * 50, [0, 1, 2, 2] * 25) > 0.2
    rng = np.random.default_rng(3)
    scores = rng.uniform(size=5000)
    assert prediction_psi(scores, rng.uniform(size=5000)) < 0.01
    assert prediction_psi(scores, rng.uniform(size=5000) ** 2) > 0.2


# --------------------------------------------------------------------------- categorical
def test_chi_squared_equals_scipy_on_the_two_by_k_table():
    rng = np.random.default_rng(11)
    levels = np.array(list("abcdefg"))
    ref = levels[rng.integers(0, 7, 4000)]
    cur = levels[rng.choice(7, 3000, p=[0.2, 0.2, 0.15, 0.15, 0.1, 0.1, 0.1])]
    table = np.array([[np.sum(ref == v) for v in levels], [np.sum(cur == v) for v in levels]])
    want = stats.chi2_contingency(table, correction=False)
    got = _one(ref, cur)
    assert got["statistic"] == pytest.approx(want.statistic, rel=1e-12)
    assert got["p_value"] == pytest.approx(want.pvalue, rel=1e-9, abs=1e-300)
    assert got["effect_size"] == pytest.approx(math.sqrt(want.statistic / 7000), rel=1e-12)


def test_levels_unseen_in_the_reference_are_named():
    ref = ["red"] * 60 + ["blue"] * 40
    cur = ["red"] * 50 + ["blue"] * 30 + ["green"] * 15 + ["violet"] * 5
    got = _one(ref, cur)
    assert got["unseen_levels"] == ["green", "violet"]
    assert got["unseen_count"] == 2 and got["unseen_share"] == pytest.approx(0.2)
    assert got["drifted"]


def test_integer_levels_match_across_int_and_float_files():
    """An integer code column that gained a missing value is read as floats: 1.0 is 1."""
    ref = pd.Series([1, 2, 3] * 100)
    cur = pd.Series([1.0, 2.0, 3.0] * 100 + [np.nan])
    got = _one(ref, cur, kind="categorical")
    assert got["unseen_levels"] == [] and not got["drifted"]
    assert got["missing_current"] == pytest.approx(1 / 301)


# --------------------------------------------------------------------------- missing values
def test_missing_values_are_counted_on_both_sides_not_dropped():
    rng = np.random.default_rng(5)
    values = rng.normal(size=2000)
    with_gaps = values.copy()
    with_gaps[:400] = np.nan  # 20% missing, the rest is the same distribution
    got = _one(rng.normal(size=2000), with_gaps)
    assert got["missing_reference"] == 0.0 and got["missing_current"] == pytest.approx(0.2)
    assert got["n_current"] == 2000
    assert got["drifted"] and any("missing" in r for r in got["reasons"])
    assert got["p_value"] > 0.05  # the KS test alone (on the values present) sees nothing


def test_missing_is_a_level_of_its_own_for_categoricals():
    ref = pd.Series(["a"] * 500 + ["b"] * 500)
    cur = pd.Series(["a"] * 400 + ["b"] * 400 + [None] * 200)
    got = _one(ref, cur)
    table = np.array([[500, 500, 0], [400, 400, 200]])
    assert got["statistic"] == pytest.approx(
        stats.chi2_contingency(table, correction=False).statistic
    )
    assert got["missing_current"] == pytest.approx(0.2) and got["unseen_levels"] == []
    assert got["drifted"]


def test_a_column_missing_entirely_on_one_side_is_reported_not_crashed():
    got = _one(np.arange(100.0), np.full(100, np.nan))
    assert got["statistic"] is None and got["p_value"] is None
    assert got["missing_current"] == 1.0 and got["drifted"]
    json.dumps(got, allow_nan=False)


# --------------------------------------------------------------------------- verdicts
def _frames(n: int, seed: int, shifted: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    levels = np.array([f"L{i}" for i in range(8)])
    even = np.full(8, 1 / 8)
    skew = np.array([0.25, 0.2, 0.15, 0.1, 0.1, 0.1, 0.05, 0.05])

    def make(shift: bool) -> pd.DataFrame:
        cols = {}
        for i in range(8):
            name = f"num{i}"
            s = shift and name in shifted
            cols[name] = rng.normal(0.5 if s else 0.0, 1.0, size=n)
        for i in range(3):
            name = f"cat{i}"
            p = skew if shift and name in shifted else even
            cols[name] = levels[rng.choice(8, n, p=p)]
        return pd.DataFrame(cols)

    return make(False), make(True)


def test_a_shift_injected_into_chosen_columns_flags_exactly_those_columns():
    shifted = {"num1", "num4", "cat2"}
    ref, cur = _frames(20_000, 1, shifted)
    rep = drift_report(ref, cur)
    flagged = {c for c, f in rep.features.items() if f["drifted"]}
    assert flagged == shifted
    assert rep.share_drifted == pytest.approx(3 / 11)
    assert not rep.drifted  # 27% of the columns is not more than the default 30%
    assert drift_report(ref, cur, config=DriftConfig(max_share=0.2)).drifted


def test_a_million_rows_of_one_distribution_flag_nothing():
    rng = np.random.default_rng(2026)
    n = 1_000_000
    levels = np.array(list("abcdefghij"))

    def sample(loc: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "a": rng.normal(size=n),
                "b": rng.exponential(size=n),
                "tiny_shift": rng.normal(loc, 1.0, size=n),
                "c": levels[rng.integers(0, 10, n)],
            }
        )

    rep = drift_report(sample(0.0), sample(0.01))
    assert not rep.drifted and rep.share_drifted == 0.0
    tiny = rep.features["tiny_shift"]
    # a hundredth of a standard deviation is significant at this size, yet too small to act on
    assert tiny["p_value_adjusted"] < 0.05 and tiny["statistic"] < 0.1 and not tiny["drifted"]


def test_p_values_are_holm_corrected_across_columns():
    ref, cur = _frames(300, 4, {"num0", "num3"})
    rep = drift_report(ref, cur)
    raw = {c: f["p_value"] for c, f in rep.features.items()}
    order = sorted(raw, key=raw.get)
    m = len(raw)
    running = 0.0
    for i, c in enumerate(order):
        running = max(running, min(1.0, (m - i) * raw[c]))
        assert rep.features[c]["p_value_adjusted"] == pytest.approx(running, rel=1e-12)
    none = drift_report(ref, cur, config=DriftConfig(correction="none"))
    assert all(f["p_value_adjusted"] == f["p_value"] for f in none.features.values())


def test_per_column_overrides_and_ignored_columns():
    ref, cur = _frames(5000, 2, {"num1", "num2"})
    cfg = DriftConfig(
        columns={"num1": {"min_effect": 0.9, "psi_threshold": 50}, "num2": {"ignore": True}}
    )
    rep = drift_report(ref, cur, config=cfg)
    assert "num2" not in rep.features
    assert not rep.features["num1"]["drifted"]
    assert drift_report(ref, cur).features["num1"]["drifted"]


def test_kinds_choose_the_columns_and_their_tests():
    ref, cur = _frames(2000, 3, set())
    ref["code"], cur["code"] = ref["num0"].round().astype(int), cur["num0"].round().astype(int)
    rep = drift_report(ref, cur, kinds={"code": "categorical", "num3": "numeric"})
    assert list(rep.features) == ["code", "num3"]
    assert rep.features["code"]["test"] == "chi2" and rep.features["num3"]["test"] == "ks"


def test_two_threads_give_the_same_report_as_one():
    ref, cur = _frames(3000, 6, {"num2", "cat0"})
    one = drift_report(ref, cur, config=DriftConfig(workers=1)).to_dict()
    two = drift_report(ref, cur, config=DriftConfig(workers=2)).to_dict()
    assert one == two


# --------------------------------------------------------------------------- outputs
def test_to_dict_is_the_drift_json_shape():
    ref, cur = _frames(1000, 8, {"num0", "cat1"})
    out = drift_report(ref, cur).to_dict()
    assert set(out) == {"drifted", "share_drifted", "features"}
    assert isinstance(out["drifted"], bool) and isinstance(out["share_drifted"], float)
    for f in out["features"].values():
        assert set(f) >= SECTION_11_KEYS
        assert f["kind"] in ("numeric", "categorical") and f["test"] in ("ks", "chi2")
        assert all(isinstance(f[k], float) for k in ("statistic", "p_value", "psi"))
        assert isinstance(f["drifted"], bool)
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_table_and_top_put_drifted_columns_first():
    ref, cur = _frames(2000, 10, {"num5", "cat0"})
    rep = drift_report(ref, cur)
    assert {c for c, _ in rep.top(2)} == {"num5", "cat0"}
    lines = format_table(rep).splitlines()
    assert lines[0].split()[:3] == ["column", "kind", "test"]
    assert {lines[2].split()[0], lines[3].split()[0]} == {"num5", "cat0"}
    assert lines[2].split()[-1] == "yes" and lines[4].split()[-1] == "no"
    assert lines[-1].startswith("2 of 11 columns drifted")


# --------------------------------------------------------------------------- files
def test_parquet_is_read_one_column_at_a_time(tmp_path, monkeypatch):
    ref, cur = _frames(4000, 12, {"num0", "cat0"})
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    reads: list[list[str]] = []
    original = pq.ParquetFile.read

    def spy(self, columns=None, *args, **kwargs):
        reads.append(list(columns) if columns is not None else ["<all>"])
        return original(self, columns, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read", spy)
    from_files = drift_report(tmp_path / "ref.parquet", str(tmp_path / "cur.parquet"))
    assert reads and all(len(cols) == 1 for cols in reads)
    assert len(reads) == 2 * ref.shape[1]
    assert from_files.to_dict() == drift_report(ref, cur).to_dict()


def test_csv_files_give_the_same_report_as_frames(tmp_path):
    ref, cur = _frames(1500, 13, {"num0"})
    ref.to_csv(tmp_path / "ref.csv", index=False, float_format="%.17g")
    cur.to_csv(tmp_path / "cur.csv", index=False, float_format="%.17g")
    got = drift_report(tmp_path / "ref.csv", tmp_path / "cur.csv").to_dict()
    assert got == drift_report(ref, cur).to_dict()


def test_datetimes_are_compared_as_numbers_in_frames_and_parquet(tmp_path):
    import datetime as dt

    import pyarrow as pa

    ref = pd.DataFrame({"at": pd.date_range("2024-01-01", periods=400, freq="h")})
    cur = ref.assign(at=ref["at"] + pd.Timedelta("20D"))
    cur.loc[5, "at"] = pd.NaT
    got = drift_report(ref, cur).features["at"]
    assert got["kind"] == "numeric" and got["drifted"] and got["missing_current"] == 1 / 400
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(400)]
    table = pa.table({"day": pa.array(days, type=pa.date32()), "at": pa.array(ref["at"])})
    pq.write_table(table, tmp_path / "a.parquet")
    same = drift_report(tmp_path / "a.parquet", tmp_path / "a.parquet").features
    assert same["day"]["kind"] == same["at"]["kind"] == "numeric"
    assert same["day"]["statistic"] == 0.0 and not same["at"]["drifted"]


# --------------------------------------------------------------------------- bad input
def test_a_column_on_one_side_only_is_a_one_line_data_error(tmp_path):
    ref = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]})
    ref.to_csv(tmp_path / "reference.csv", index=False)
    ref[["y"]].to_csv(tmp_path / "current.csv", index=False)
    with pytest.raises(DataError) as err:
        drift_report(tmp_path / "reference.csv", tmp_path / "current.csv")
    msg = str(err.value)
    assert "current.csv: missing columns ['x'] present in the reference" in msg
    assert "\n" not in msg
    # the other way round: the file given as the reference lacks the column
    with pytest.raises(DataError, match=r"current\.csv: missing columns \['x'\] present in the cu"):
        drift_report(tmp_path / "current.csv", tmp_path / "reference.csv")
    with pytest.raises(DataError, match=r"current: missing columns \['z'\]"):
        drift_report(ref.assign(z=1.0), ref, kinds={"x": "numeric", "z": "numeric"})


@pytest.mark.parametrize("content", ["", "x,y\n"], ids=["zero bytes", "header only"])
def test_an_empty_csv_is_a_data_error(tmp_path, content):
    ref = tmp_path / "reference.csv"
    ref.write_text("x,y\n1,a\n2,b\n")
    cur = tmp_path / "current.csv"
    cur.write_text(content)
    with pytest.raises(DataError, match=r"current\.csv: "):
        drift_report(ref, cur)


def test_an_empty_or_broken_parquet_is_a_data_error(tmp_path):
    ref = pd.DataFrame({"x": [1.0, 2.0]})
    ref.to_parquet(tmp_path / "ref.parquet")
    ref.iloc[:0].to_parquet(tmp_path / "empty.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"empty\.parquet: has no rows"):
        drift_report(tmp_path / "ref.parquet", tmp_path / "empty.parquet")
    with pytest.raises(DataError, match=r"broken\.parquet: not a readable Parquet file"):
        drift_report(tmp_path / "ref.parquet", tmp_path / "broken.parquet")
    with pytest.raises(DataError, match=r"nowhere\.parquet: file not found"):
        drift_report(tmp_path / "ref.parquet", tmp_path / "nowhere.parquet")


def test_text_in_a_numeric_column_is_a_data_error(tmp_path):
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    cur = pd.DataFrame({"x": ["1.5", "oops", "2"]})
    with pytest.raises(
        DataError, match=r"current: column 'x' is declared numeric but holds 'oops'"
    ):
        drift_report(ref, cur, kinds={"x": "numeric"})
    cur.to_parquet(tmp_path / "cur.parquet")
    with pytest.raises(DataError, match=r"cur\.parquet: column 'x' is declared numeric"):
        drift_report(ref, tmp_path / "cur.parquet", kinds={"x": "numeric"})


# --------------------------------------------------------------------------- configuration
def test_an_empty_or_absent_drift_yaml_gives_the_defaults(tmp_path):
    assert load_model(DriftConfig, tmp_path, "drift") == DriftConfig()
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "drift.yaml").write_text("# nothing set\n")
    cfg = load_model(DriftConfig, tmp_path, "drift")
    assert (cfg.psi_threshold, cfg.p_value, cfg.min_effect, cfg.psi_bins) == (0.2, 0.05, 0.1, 10)
    assert cfg.correction == "holm" and cfg.max_share == 0.3 and cfg.psi_epsilon == 1e-4


def test_the_project_drift_yaml_is_valid():
    root = Path(__file__).resolve().parents[1]
    load_model(DriftConfig, root, "drift")


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("p_value: 1.5\n", "p_value"),
        ("psi_threshold: 0\n", "psi_threshold"),
        ("psi_bins: 1\n", "psi_bins"),
        ("max_share: 2\n", "max_share"),
        ("correction: sidak\n", "correction"),
        ("psi_bins: 500\npsi_epsilon: 0.005\n", "psi_epsilon"),
        ("columns:\n  x:\n    p_value: 0\n", "columns.x.p_value"),
        ("columns:\n  x:\n    treshold: 1\n", "columns.x.treshold"),
        ("bins: 10\n", "bins"),
    ],
)
def test_impossible_drift_settings_are_refused_naming_the_key(tmp_path, yaml_text, key):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "drift.yaml").write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_model(DriftConfig, tmp_path, "drift")
    assert str(err.value).startswith("configs/drift.yaml: ")
    assert key in str(err.value)


def test_drift_config_is_strict():
    with pytest.raises(ValidationError):
        DriftConfig(unknown=1)
    assert DriftConfig(columns={"x": {"p_value": 0.01}}).thresholds("x") == (0.2, 0.01, 0.1)
    assert drift.DriftConfig().thresholds("anything") == (0.2, 0.05, 0.1)
