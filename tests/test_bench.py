"""``rnnlab bench`` at a tiny size: it runs, prints one JSON object and every check passes.
Times are never asserted (BENCHMARKS.md)."""

import json

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
        assert row["path"] in ("fused", "reference")
        assert row["check"]["ok"], (cell, row["check"])
        assert row["check"]["vs_reference"]["ok"]
        assert {"loop", "rnnlab"} <= row["ms"].keys()
    assert rows["rnn"]["check"]["vs_torch"]["ok"] and rows["rnn"]["check"]["compat_vs_torch"]["ok"]
    assert "torch" in rows["rnn"]["ms"]
    assert rows["mgu"]["check"]["vs_torch"] is None and "torch" not in rows["mgu"]["ms"]


def test_every_cell_family_is_benchmarked_and_tiny_is_hidden():
    assert set(CELL_NAMES) | {"lstm-proj", "feedback"} == set(bench.CELLS)
    assert "tiny" in bench.CONFIGS and "tiny" not in bench.DEFAULT_CONFIGS


def test_tables_leave_missing_baselines_empty():
    row = bench.Row("mgu", "tiny", 1, "reference", {"loop": 2.0, "rnnlab": 1.0}, {}, None, None,
                    {"ok": True, "vs_reference": {"ok": True, "worst_rel_err": 0.0,
                                                  "worst_tensor": "output"},
                     "vs_torch": None, "compat_vs_torch": None})
    line = bench.tables([row], 1).splitlines()[-1]
    assert line.startswith("| mgu | tiny | reference |  | 2.000 ms | 1.000 ms |  | 2.00× |")
