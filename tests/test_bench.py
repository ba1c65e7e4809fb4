"""``rnnlab bench`` at a tiny size: it runs, prints one JSON object and every check passes.
Times are never asserted (benchmarks/README.md)."""

import json

import pytest

from rnnlab import CELL_NAMES, bench
from rnnlab.cli import main


def test_bench_json_rows_and_checks(capsys):
    code = main(["bench", "--configs", "tiny", "--cells", "rnn", "mgu", "--threads", "1",
                 "--repeats", "1", "--json"])
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    rows = {row["cell"]: row for row in result["rows"]}
    assert code == 0
    assert set(rows) == {"rnn", "mgu"}
    for cell, row in rows.items():
        assert row["config"] == "tiny" and row["threads"] == 1
        assert row["path"] in ("fused", "generic", "reference")
        assert row["check"]["ok"], (cell, row["check"])
        assert row["check"]["vs_reference"]["ok"]
        assert {"loop", "rnnlab"} <= row["ms"].keys()
    assert rows["rnn"]["check"]["vs_torch"]["ok"] and rows["rnn"]["check"]["compat_vs_torch"]["ok"]
    assert "torch" in rows["rnn"]["ms"]
    assert rows["mgu"]["check"]["vs_torch"] is None and "torch" not in rows["mgu"]["ms"]


def test_every_cell_family_is_benchmarked_and_tiny_is_hidden():
    assert set(CELL_NAMES) | {"lstm-proj", "feedback", *bench.REGULARIZED, *bench.CUSTOM_CELLS,
                              *bench.GENERIC} == set(bench.CELLS)


@pytest.mark.parametrize("cell", ["lstm+rd", "gru+zo"])
def test_regularized_variants_check_against_the_reference_under_the_same_masks(cell):
    models, xs, d_ys = bench.build(cell, bench.CONFIGS["tiny"])
    assert "torch" not in models and models["rnnlab"].training
    result = bench.check_float64(cell, bench.CONFIGS["tiny"])
    assert result["ok"] and result["vs_reference"]["worst_rel_err"] < 1e-10


def test_unknown_regularizer_suffix_is_refused():
    with pytest.raises(ValueError, match=r"unknown regulariser suffix 'xx'.*\+rd, \+zo"):
        bench.build("lstm+xx", bench.CONFIGS["tiny"])
    assert "tiny" in bench.CONFIGS and "tiny" not in bench.DEFAULT_CONFIGS


def test_tables_leave_missing_baselines_empty():
    row = bench.Row("mgu", "tiny", 1, "reference", {"loop": 2.0, "rnnlab": 1.0}, {}, None, None,
                    {"ok": True, "vs_reference": {"ok": True, "worst_rel_err": 0.0,
                                                  "worst_tensor": "output"},
                     "vs_torch": None, "compat_vs_torch": None})
    line = bench.tables([row], 1).splitlines()[-1]
    assert line.startswith("| mgu | tiny | reference |  | 2.000 ms | 1.000 ms |  | 2.00× |")


@pytest.mark.parametrize("cell", ["hand-gru", "lstm+zo@generic"])
def test_generic_rows_check_the_generic_path_against_the_reference(cell, monkeypatch):
    monkeypatch.setattr(bench.fast, "ENABLED", True)     # as the bench's workers turn it on
    models, _, _ = bench.build(cell, bench.CONFIGS["tiny"])
    assert models["rnnlab"].path == "generic"
    assert ("kernel" in models) == (cell == "hand-gru") and ("lstm" in models) != (cell ==
                                                                                   "hand-gru")
    result = bench.check_float64(cell, bench.CONFIGS["tiny"])
    assert result["ok"] and result["vs_reference"]["worst_rel_err"] < 1e-10
