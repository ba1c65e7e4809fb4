"""PTB-style bracketed trees (rnnlab.data.trees): parsing, post-order, every malformed case."""

import pytest

from rnnlab.data import DataError
from rnnlab.data.trees import Tree, parse_tree, read_trees

SST_LINE = "(3 (2 It) (4 (2 's) (3 good)))"


def test_parse_round_trip_and_accessors():
    tree = parse_tree(SST_LINE)
    assert str(tree) == SST_LINE
    assert parse_tree(str(tree)) == tree
    assert tree.label == 3 and not tree.is_leaf
    assert tree.words() == ["It", "'s", "good"]
    assert [leaf.label for leaf in tree.leaves()] == [2, 2, 3]
    assert all(leaf.is_leaf and not leaf.children for leaf in tree.leaves())


def test_nodes_are_post_order_children_before_parents():
    tree = parse_tree("(1 (2 (3 a) (4 b)) (5 (6 c) (7 (8 d) (9 e))))")
    assert [n.label for n in tree.nodes()] == [3, 4, 2, 6, 8, 9, 7, 5, 1]
    seen = set()
    for node in tree.nodes():
        assert all(id(c) in seen for c in node.children)
        seen.add(id(node))
    assert tree.nodes()[-1] is tree


def test_white_space_layout_string_labels_and_unicode_words():
    tree = parse_tree("(S\n  (NP (DT the) (NN cat))\t(VP (VBD sat)) )", int_labels=False)
    assert tree.label == "S" and tree.words() == ["the", "cat", "sat"]
    assert str(tree) == "(S (NP (DT the) (NN cat)) (VP (VBD sat)))"
    # only ASCII white space separates: SST has a no-break space inside "8 1/2"
    leaf = parse_tree("(2 8\u00a01\\/2)")
    assert leaf.is_leaf and leaf.word == "8\u00a01\\/2"


def test_deep_tree_needs_no_recursion():
    depth = 5000
    text = "(1 " * depth + "(2 x)" + ")" * depth
    tree = parse_tree(text)
    assert len(tree.nodes()) == depth + 1 and tree.words() == ["x"]
    assert str(tree) == text


@pytest.mark.parametrize("text, line, col, what", [
    ("(3 (2 a)", 1, 1, "unbalanced brackets"),
    ("(3 (2 a) (2 b)\n", 1, 1, "never closed"),
    ("(3 (2 a)))", 1, 10, "trailing text ')'"),
    (")", 1, 1, "unbalanced ')'"),
    ("( (2 a))", 1, 3, "missing label"),
    ("(3 ()", 1, 5, "missing label"),
    ("(", 1, 2, "missing label"),
    ("(x (2 a))", 1, 2, "label 'x' is not an integer"),
    ("(3 (2.5 a))", 1, 5, "label '2.5' is not an integer"),
    ("", 1, 1, "empty input"),
    ("  \n ", 1, 1, "empty input"),
    ("(2 a) junk", 1, 7, "trailing text 'junk'"),
    ("(2 a)\n(3 b)", 2, 1, "trailing text '('"),
    ("(2 a b)", 1, 6, "second word 'b'"),
    ("(2 a (2 b))", 1, 6, "both a word"),
    ("(2 (2 a) b)", 1, 10, "word 'b' among the subtrees"),
    ("(2)", 1, 3, "neither a word nor subtrees"),
    ("word", 1, 1, "outside a tree"),
])
def test_malformed_trees_name_line_and_column(text, line, col, what):
    with pytest.raises(DataError) as err:
        parse_tree(text)
    message = str(err.value)
    assert message.startswith(f"line {line}, column {col}: "), message
    assert what in message


def test_read_trees_skips_blank_lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(SST_LINE + "\n\n(1 (1 bad))\r\n", encoding="utf-8")
    trees = read_trees(path)
    assert [t.label for t in trees] == [3, 1] and str(trees[1]) == "(1 (1 bad))"
    assert isinstance(trees[0], Tree)


@pytest.mark.parametrize("bad, col, what", [
    ("(3 (2 a) (2 b)", 1, "never closed"),
    ("(3 (2 a)) )", 11, "trailing text ')'"),
    ("(3 (x a))", 5, "label 'x' is not an integer"),
    ("(3 ((2 a)))", 5, "missing label"),
    ("(3 (2 a)) extra", 11, "trailing text 'extra'"),
])
def test_read_trees_errors_name_file_line_column(tmp_path, bad, col, what):
    path = tmp_path / "trees.txt"
    path.write_text(f"{SST_LINE}\n\n{bad}\n{SST_LINE}\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_trees(path)
    assert str(err.value).startswith(f"{path}:3:{col}: "), str(err.value)
    assert what in str(err.value)


def test_read_trees_empty_and_missing_files(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"blank\.txt: empty input"):
        read_trees(blank)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        read_trees(empty)
    with pytest.raises(DataError, match="does not exist"):
        read_trees(tmp_path / "missing.txt")


def test_real_sst_dev_file(shared_data):
    path = shared_data("sst") / "dev.txt"
    trees = read_trees(path)
    assert len(trees) == 1101
    lines = path.read_text(encoding="utf-8").split("\n")
    assert [str(t) for t in trees] == [line for line in lines if line.strip()]
    assert all(0 <= n.label <= 4 for t in trees for n in t.nodes())
    # a binarised treebank: every inner node has two children, every leaf one word
    assert all(len(n.children) == 2 for t in trees for n in t.nodes() if not n.is_leaf)
    assert sorted({t.label for t in trees}) == [0, 1, 2, 3, 4]
