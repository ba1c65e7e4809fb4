"""Recursive nets: the batched level-by-level Tree-LSTM equals a per-node recursion, and the
tree-sentiment task trains, evaluates and predicts."""

import json

import pytest
import torch

from rnnlab.cli import main
from rnnlab.data.trees import parse_tree
from rnnlab.models.recursive import ChildSumTreeLSTM, NaryTreeLSTM, TreeBatch, TreeRNN

TREES = ["(3 (2 It) (4 (2 's) (3 good)))", "(1 (1 bad))", "(2 (2 a) (2 (2 b) (2 (1 c) (3 d))))",
         "(4 (3 x) (2 y) (4 z))"]


def recursive_reference(cell, tree, x_of):
    """The composition applied node by node, recursively (the definition)."""
    def go(node):
        kids = [go(c) for c in node.children]
        H = cell.hidden_size
        A = max(len(kids), 1)
        fields = cell.state_fields
        f64 = torch.float64
        stack = [torch.stack([k[f] for k in kids]) if kids else torch.zeros(A, H, dtype=f64)
                 for f in range(fields)]
        mask = torch.ones(A, 1, dtype=f64) if kids else torch.zeros(A, 1, dtype=f64)
        new = cell.compose(x_of(node).unsqueeze(0), [s.unsqueeze(0) for s in stack],
                           mask.unsqueeze(0))
        return [n[0] for n in new]
    return go(tree)[0]


@pytest.mark.parametrize("cls", [ChildSumTreeLSTM, TreeRNN, NaryTreeLSTM])
def test_batched_levels_equal_the_recursion(cls):
    torch.manual_seed(0)
    trees = [parse_tree(t) for t in TREES]
    if cls is NaryTreeLSTM:
        trees = trees[:3]                                 # the last has a 3-child node
    vocab = {w: i for i, w in enumerate(sorted({w for t in trees for w in t.words()}))}
    cell = cls(5, 4).double()
    emb = torch.randn(len(vocab), 5, dtype=torch.float64)
    batch = TreeBatch.build(trees, vocab.__getitem__)
    x = torch.where((batch.words >= 0).unsqueeze(-1), emb[batch.words.clamp(min=0)],
                    torch.zeros(()))
    h = cell(x, batch)
    for k, tree in enumerate(trees):
        def x_of(node):
            return emb[vocab[node.word]] if node.is_leaf else torch.zeros(5, dtype=torch.float64)
        torch.testing.assert_close(h[batch.roots[k]], recursive_reference(cell, tree, x_of))
    torch.autograd.gradcheck(lambda xx: cell(xx, batch), (x.clone().requires_grad_(),))


def test_nary_refuses_wider_nodes():
    batch = TreeBatch.build([parse_tree(TREES[3])], lambda w: 0)
    with pytest.raises(ValueError, match="N = 2 got a node with 3 children"):
        NaryTreeLSTM(3, 4)(torch.zeros(batch.num_nodes, 3), batch)


def test_levels_put_children_before_parents():
    batch = TreeBatch.build([parse_tree(t) for t in TREES], lambda w: 0)
    seen = set()
    for start, end, children in batch.levels:
        for row in children.tolist():
            assert all(c in seen for c in row if c >= 0)
        seen.update(range(start, end))
    assert len(seen) == batch.num_nodes


@pytest.fixture
def sst_dir(tmp_path):
    pos = ["(4 (3 good) (4 great))", "(3 (3 fine) (2 (2 the) (3 film)))", "(4 (4 great))"]
    neg = ["(0 (0 awful) (1 bad))", "(1 (1 dull) (2 (2 the) (1 plot)))", "(0 (0 awful))"]
    neutral = ["(2 (2 the) (2 film))"]
    for name, n in (("train.txt", 30), ("dev.txt", 3), ("test.txt", 3)):
        (tmp_path / name).write_text("\n".join((pos + neg + neutral) * n) + "\n",
                                     encoding="utf-8")
    return tmp_path


def test_tree_sentiment_trains_evaluates_predicts(sst_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "tree-sentiment", "--data", str(sst_dir), "--out", str(run),
                 "--json", "--set", "train.threads=1", "train.device=cpu", "train.steps=60",
                 "model.hidden=16", "model.embed=8", "train.lr=0.02", "data.binary=true",
                 "train.eval_every=60"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["test_accuracy"] == 1.0 and result["test_all_node_accuracy"] > 0.8
    assert main(["predict", str(run), "(3 (3 great) (2 film))", "(1 (1 awful) (2 plot))"]) == 0
    assert capsys.readouterr().out.split("\n")[:2] == ["positive", "negative"]
    assert main(["predict", str(run), "(3 great"]) == 2
    assert "input 1 is not a bracketed tree" in capsys.readouterr().err


def test_tree_sentiment_data_errors(sst_dir, tmp_path, capsys):
    assert main(["train", "tree-sentiment"]) == 2
    assert "--data FOLDER" in capsys.readouterr().err
    (sst_dir / "dev.txt").unlink()
    assert main(["train", "tree-sentiment", "--data", str(sst_dir)]) == 2
    assert "lacks dev.txt" in capsys.readouterr().err
    (sst_dir / "dev.txt").write_text("(2 (2 a) (7 b))\n(3 (3 x)\n", encoding="utf-8")
    assert main(["train", "tree-sentiment", "--data", str(sst_dir)]) == 2
    err = capsys.readouterr().err
    assert "dev.txt:2:" in err


def test_real_sst_reads(shared_data):
    from rnnlab.config import apply_overrides
    from rnnlab.tasks import TreeSentiment
    cfg = apply_overrides(TreeSentiment.default_config(), [f"data.path={shared_data('sst')}"])
    task = TreeSentiment(cfg)
    assert [len(task.splits[s]) for s in ("train", "valid", "test")] == [8544, 1101, 2210]
