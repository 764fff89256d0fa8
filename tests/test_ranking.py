"""Notebook 04's package parts: FAQ loader, negative mining, score files, ranx metrics, encoder, runs."""

import gzip
import math

import pytest
import torch

from cookbook.data.retrieval import load_python_faq, mine_negatives, parse_faq_page
from cookbook.metrics import evaluate_run, ranking_metrics, run_from_scores
from cookbook.models.text import BM25, TextEncoder, code_words, pca_embeddings
from cookbook.teachers.rank_scores import read_rank_scores, write_rank_scores

# ----------------------------------------------------------------------------- data


def test_parse_faq_page_takes_question_headings_only():
    text = ("=====\nTitle\n=====\n\nSection\n=======\n\nWhat is X?\n----------\n\nX is a thing.\n\nMore.\n\n"
            "Why Y?\n~~~~~~\nBecause.\n\nNot a question\n--------------\nbody\n\nEmpty?\n------\n\n")
    rows = parse_faq_page(text, "p")
    assert [(r[0], r[1], r[2]) for r in rows] == [("p#what-is-x", "What is X?", "X is a thing.\n\nMore."),
                                                  ("p#why-y", "Why Y?", "Because.")]


def test_python_faq_loads_174_pairs():
    faq = load_python_faq()
    assert len(faq) == 174 == len(faq.documents) == len(set(faq.ids))
    assert torch.equal(faq.relevance, torch.arange(174))
    assert all(q.endswith("?") for q in faq.queries) and all(faq.documents)
    assert faq.queries[0] == "What is Python?"


def test_mine_negatives_skips_the_positive_and_orders_by_score():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.5], [0.0, 0.3, 0.2, 0.9]])
    pos = torch.tensor([1, 3])
    assert mine_negatives(scores, pos, 2).tolist() == [[0, 3], [1, 2]]
    assert mine_negatives(scores, pos, 1, skip=1).tolist() == [[3], [2]]
    with pytest.raises(ValueError, match="only 3 documents"):
        mine_negatives(scores, pos, 4)
    with pytest.raises(ValueError, match="positives has 1"):
        mine_negatives(scores, pos[:1], 1)


# ----------------------------------------------------------------------------- score files


def _rows():
    return (["q1", "q1", "q2"], ["d1", "d2", "d1"], torch.tensor([0.5, -0.25, 0.125]), torch.tensor([1, 0, 0]),
            ["pos", "bm25", "run"])


def test_rank_scores_round_trip_and_reproducible_bytes(tmp_path):
    header = {"teacher": "toy@0123456789abcdef", "score": "dot"}
    a = write_rank_scores(tmp_path / "a.tsv.gz", header, *_rows())
    b = write_rank_scores(tmp_path / "b.tsv.gz", header, *_rows())
    assert a.read_bytes() == b.read_bytes()
    r = read_rank_scores(a, teacher="toy@0123456789abcdef")
    assert r.qid == ["q1", "q1", "q2"] and r.docid == ["d1", "d2", "d1"] and r.source == ["pos", "bm25", "run"]
    assert torch.allclose(r.score, torch.tensor([0.5, -0.25, 0.125])) and r.label.tolist() == [1, 0, 0]
    assert r.header["rows"] == 3 and r.teacher == "toy@0123456789abcdef"
    assert r.run() == {"q1": {"d1": 0.5, "d2": -0.25}, "q2": {"d1": 0.125}}
    assert r.qrels() == {"q1": {"d1": 1}}
    text = gzip.open(a, "rt").read().splitlines()
    assert text[1] == "qid\tdocid\tscore\tlabel\tsource" and text[2] == "q1\td1\t0.500000\t1\tpos"
    pandas = pytest.importorskip("pandas")        # the documented way to read it without the cookbook
    df = pandas.read_csv(a, sep="\t", skiprows=1)
    assert list(df.columns) == ["qid", "docid", "score", "label", "source"] and len(df) == 3


def test_rank_scores_refuse_bad_files(tmp_path):
    q, d, s, y, src = _rows()
    with pytest.raises(ValueError, match="teacher"):
        write_rank_scores(tmp_path / "x", {}, q, d, s, y, src)
    with pytest.raises(ValueError, match="twice"):
        write_rank_scores(tmp_path / "x", {"teacher": "t"}, ["q1", "q1"], ["d1", "d1"], s[:2], y[:2], src[:2])
    with pytest.raises(ValueError, match="non-finite"):
        write_rank_scores(tmp_path / "x", {"teacher": "t"}, q, d, torch.tensor([0.0, math.inf, 0.0]), y, src)
    with pytest.raises(ValueError, match="unknown source"):
        write_rank_scores(tmp_path / "x", {"teacher": "t"}, q, d, s, y, ["pos", "bm25", "oops"])
    path = write_rank_scores(tmp_path / "ok.tsv.gz", {"teacher": "t"}, q, d, s, y, src)
    with pytest.raises(ValueError, match="not of 'other'"):
        read_rank_scores(path, teacher="other")
    lines = gzip.open(path, "rt").read().splitlines()
    with gzip.open(tmp_path / "cut.tsv.gz", "wt") as f:
        f.write("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match="truncated"):
        read_rank_scores(tmp_path / "cut.tsv.gz")


def test_committed_score_files_match_the_data():
    from cookbook.data.stdlib import load_code_retrieval
    from cookbook.teachers.rank_scores import committed_scores, stdlib_ids

    train = committed_scores("train")
    ids = set(stdlib_ids(*(lambda r: (r.paths, r.qualnames))(load_code_retrieval("train"))))
    assert set(train.qid) <= ids and set(train.docid) <= ids
    assert train.teacher.startswith("all-MiniLM-L6-v2@")
    per_query = {}
    for q, y in zip(train.qid, train.label.tolist()):
        per_query.setdefault(q, []).append(y)
    assert all(sum(v) == 1 and len(v) == 9 for v in per_query.values())
    assert committed_scores("faq").teacher == train.teacher == committed_scores("test").teacher


# ----------------------------------------------------------------------------- metrics (ranx)


def test_ranking_metrics_hand_computed():
    s = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.9, 0.5], [0.1, 0.2, 0.3]])
    rel = torch.tensor([0, 2, 0])                         # the relevant document ranks 1st, 2nd, 3rd
    m = ranking_metrics(s, rel, ("mrr@10", "ndcg@10", "recall@1", "recall@2", "mrr@2"))
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(4)) / 3)
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@2"] == pytest.approx(2 / 3)
    assert m["mrr@2"] == pytest.approx((1 + 1 / 2) / 3)     # the 3rd-ranked one is cut off


def test_evaluate_run_counts_unranked_queries_as_zero():
    qrels = {"a": {"x": 1}, "b": {"y": 1}}
    assert evaluate_run({"a": {"x": 1.0, "z": 0.5}}, qrels, ("mrr@10",))["mrr@10"] == pytest.approx(0.5)
    run = run_from_scores(torch.tensor([[0.1, 0.9]]), ["a"], ["x", "z"], k=1)
    assert run == {"a": {"z": pytest.approx(0.9)}}
    with pytest.raises(ValueError, match="must be"):
        run_from_scores(torch.zeros(2, 2), ["a"], ["x", "z"])
    with pytest.raises(ValueError, match="relevant"):
        ranking_metrics(torch.zeros(2, 3), torch.tensor([0, 3]))


# ----------------------------------------------------------------------------- models


def test_text_encoder_exits_and_padding():
    torch.manual_seed(0)
    m = TextEncoder(50, dim=16, layers=3, heads=2, max_len=12).eval()
    ids = torch.randint(1, 50, (4, 7))
    mask = torch.ones_like(ids)
    mask[0, 4:] = 0
    outs = m.exits(ids, mask)
    assert len(outs) == 3 and all(o.shape == (4, 16) for o in outs)
    assert torch.allclose(outs[0].norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.allclose(m(ids, mask, exit=2), outs[1], atol=1e-6)
    # padding tokens do not change a row's embedding
    ids2 = ids.clone()
    ids2[0, 4:] = 0
    assert torch.allclose(m(ids2, mask)[0], outs[-1][0], atol=1e-5)
    with pytest.raises(ValueError, match="exit 4"):
        m(ids, mask, exit=4)
    with pytest.raises(ValueError, match="max_len"):
        m(torch.ones(1, 13, dtype=torch.long), torch.ones(1, 13, dtype=torch.long))


def test_pca_embeddings_and_code_words():
    w = torch.randn(100, 8) @ torch.randn(8, 8)
    e = pca_embeddings(w, 3)
    assert e.shape == (100, 3) and torch.allclose(e.std(), torch.tensor(1.0), rtol=1e-4)
    cov = torch.cov(e.T)
    assert torch.allclose(cov - torch.diag(torch.diag(cov)), torch.zeros(3, 3), atol=1e-3)   # decorrelated
    assert code_words("def getValue_from(dict_x):") == "def get value from dict x "


def test_bm25_ranks_the_matching_document_first():
    docs = ["def parse_json(text): return json.loads(text)", "def add(a, b): return a + b",
            "def read_file(path): return open(path).read()"]
    s = BM25(docs).scores(["parse json text", "read a file from a path"])
    assert s.shape == (2, 3) and s[0].argmax() == 0 and s[1].argmax() == 2


# ----------------------------------------------------------------------------- runs


def test_train_ranker_runs_every_method_and_the_loss_falls():
    from cookbook.methods.ranking import (
        METHODS,
        RankingLists,
        evaluate_ranker,
        make_loss,
        train_ranker,
    )

    g = torch.Generator().manual_seed(0)
    n, v = 24, 40
    q_ids = torch.randint(1, v, (n, 5), generator=g)
    lists = RankingLists(q_ids, torch.ones_like(q_ids), q_ids.clone(), torch.ones_like(q_ids), torch.arange(n),
                         torch.stack([torch.randperm(n, generator=g)[:4] for _ in range(n)]), torch.randn(n, 5, generator=g))
    lists.negatives[lists.negatives == torch.arange(n)[:, None]] = (torch.arange(n)[:, None].expand(-1, 4)[lists.negatives == torch.arange(n)[:, None]] + 1) % n
    for method in METHODS:
        torch.manual_seed(0)
        m = TextEncoder(v, dim=16, layers=2, heads=2, max_len=8, dropout=0.0)
        kw = {"exit_layers": (1, 2)} if method == "multi_exit" else {}
        before = make_loss(method, lists, k=2, seed=1, **kw)(m, torch.arange(n)).item()
        train_ranker(m, method, lists, epochs=6, lr=3e-3, batch_size=8, k=2, seed=0, progress=False, **kw)
        after = make_loss(method, lists, k=2, seed=1, **kw)(m, torch.arange(n)).item()
        assert after < before, method
    tok = (q_ids, torch.ones_like(q_ids))
    res = evaluate_ranker(m, tok, tok, torch.arange(n), exits=(1, None))
    assert set(res) == {1, None} and set(res[None]) == {"mrr@10", "ndcg@10", "recall@10"}
    from cookbook.metrics import ranking_metrics
    from cookbook.models.text import encode
    q1 = encode(m, *tok, exit=1)
    assert res[1] == ranking_metrics(q1 @ q1.T, torch.arange(n))
    with pytest.raises(ValueError, match="method"):
        make_loss("nope", lists, k=2)
    with pytest.raises(ValueError, match="k = 9"):
        make_loss("kl", lists, k=9)


def test_committed_faq_copy_equals_the_debian_parse():
    import json

    from cookbook import assets
    from cookbook.data.retrieval import FAQ_ASSET, FAQ_DEBIAN, build_python_faq

    with gzip.open(assets.asset(FAQ_ASSET), "rt", encoding="utf-8") as f:
        committed = [tuple(r) for r in json.load(f)["pairs"]]
    assert len(committed) == 174
    if not (FAQ_DEBIAN / "general.rst.txt").exists():
        pytest.skip("Debian python3.11-doc not installed (make data): only the committed copy was checked")
    assert build_python_faq() == committed


def test_notebook_04_assets_are_in_the_manifest_and_small():
    from cookbook import assets

    manifest = assets.read_manifest()
    files = [p for p in (assets.ASSETS / "ranking").iterdir()] + [assets.ASSETS / "data" / "python_faq.json.gz"]
    for path in files:
        rel = path.relative_to(assets.ASSETS).as_posix()
        assert rel in manifest, f"{rel} is not in assets/MANIFEST"
        assert manifest[rel] == (assets.sha256(path), path.stat().st_size), f"{rel}: MANIFEST entry is stale"
        assert path.stat().st_size <= 8 * 2**20
