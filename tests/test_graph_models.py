import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("torch_geometric")

from torch_geometric.nn import SAGEConv  # noqa: E402
from torch_geometric.utils import subgraph  # noqa: E402

from cookbook.bench import graph as graph_bench  # noqa: E402
from cookbook.data.graph_splits import (  # noqa: E402
    check_graph,
    inductive_split,
    observed_subgraph,
    planetoid_split,
)
from cookbook.models.graph import GNN, GraphTokenizer, NodeMLP, VectorQuantizer, sparse_features  # noqa: E402


def _graph(n=40, f=30, c=4, seed=0, isolated=3):
    """A random undirected graph whose last ``isolated`` nodes have no edges; sparse-ish features."""
    g = torch.Generator().manual_seed(seed)
    src, dst = torch.randint(0, n - isolated, (2, 3 * n), generator=g)
    keep = src != dst
    ei = torch.unique(torch.cat([torch.stack([src[keep], dst[keep]]), torch.stack([dst[keep], src[keep]])], 1), dim=1)
    x = torch.rand(n, f, generator=g) * (torch.rand(n, f, generator=g) < 0.2)
    y = torch.randint(0, c, (n,), generator=g)
    return x, ei, y


# ----------------------------------------------------------------------------- models

def test_linear_first_sage_equals_pyg_sageconv():
    x, ei, _ = _graph()
    model = GNN("sage", 30, 4, hidden=8, num_layers=1)
    ref = SAGEConv(30, 4)
    ref.load_state_dict(model.convs[0].state_dict())
    assert torch.allclose(model(x, ei), ref(x, ei), atol=1e-5)   # isolated nodes included


@pytest.mark.parametrize("kind", ["gcn", "sage"])
def test_gnn_sparse_input_equals_dense_and_isolated_nodes_are_finite(kind):
    torch.manual_seed(0)
    x, ei, _ = _graph()
    model = GNN(kind, 30, 4, hidden=8).eval()
    dense = model(x, ei)
    assert dense.shape == (40, 4) and torch.isfinite(dense).all()
    assert torch.allclose(model(sparse_features(x), ei), dense, atol=1e-5)


def test_gnn_and_tokenizer_reject_bad_graphs():
    x, ei, _ = _graph()
    model = GNN("gcn", 30, 4)
    with pytest.raises(ValueError, match="node ids"):
        model(x, torch.tensor([[0, 40], [40, 0]]))
    with pytest.raises(ValueError, match="graph has 30 nodes"):
        model(x[:30], ei)
    with pytest.raises(ValueError, match="kind"):
        GNN("gat", 30, 4)
    with pytest.raises(ValueError, match="one row per node"):
        GraphTokenizer(30, 4, num_codes=8, code_dim=4)(x[:30], ei)
    with pytest.raises(ValueError, match="x has 39 rows"):
        check_graph(40, ei, x[:39])
    with pytest.raises(ValueError, match="y has 3 labels"):
        check_graph(40, ei, x, torch.zeros(3))


def test_node_mlp_sparse_equals_dense_ignores_edges_and_projects():
    torch.manual_seed(0)
    x, ei, _ = _graph()
    m = NodeMLP(30, 4, hidden=(16,), code_dim=5).eval()
    assert torch.allclose(m(sparse_features(x)), m(x), atol=1e-5)
    assert torch.equal(m(x, ei), m(x))
    logits, h = m.embed(x)
    assert logits.shape == (40, 4) and m.proj(h).shape == (40, 5)


def test_vector_quantizer_nearest_code_straight_through_and_ema():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 3, decay=0.5)
    h = F.normalize(torch.randn(32, 3), dim=-1).requires_grad_(True)
    q, codes, commit = vq(h)                                   # first call initialises the codebook
    assert torch.allclose(vq.codebook.norm(dim=-1), torch.ones(4), atol=1e-5)
    q_codes = q.detach().clone()
    (q.sum() + commit).backward()
    # straight-through: d(sum q)/dh = 1; commitment beta * mean (h - sg(q))^2 adds 2 beta (h - q) / numel
    assert torch.allclose(h.grad, 1 + 2 * vq.beta * (h - q_codes).detach() / h.numel(), atol=1e-6)
    # eval: no codebook update, codes are the nearest (largest cosine) codes
    vq.eval()
    before = vq.codebook.clone()
    _, codes, _ = vq(h.detach())
    assert torch.equal(vq.codebook, before)
    assert torch.equal(codes, (h.detach() @ before.t()).argmax(-1))


def test_vector_quantizer_moves_codes_to_their_members_and_restarts_dead_codes():
    torch.manual_seed(1)
    vq = VectorQuantizer(3, 2, decay=0.0, dead_below=0.5)
    vq.codebook.copy_(torch.tensor([[0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]]))
    vq.ema_count.fill_(1.0)
    vq.initialised.fill_(True)
    members = F.normalize(torch.tensor([[1.0, 0.1], [1.0, -0.1]]), dim=-1)
    _, codes, _ = vq(members)
    assert codes.tolist() == [0, 0]
    # decay 0: code 0 moves to the renormalised mean of its members, (1, 0) ...
    assert torch.allclose(vq.codebook[0], torch.tensor([1.0, 0.0]), atol=1e-6)
    # ... and the unused codes (count 0 < dead_below) restart on input vectors
    for k in (1, 2):
        assert min((vq.codebook[k] - m).norm() for m in members) < 1e-6


def test_tokenizer_outputs_and_training_lowers_its_loss():
    torch.manual_seed(0)
    x, ei, y = _graph(n=60, f=20, c=3)
    tok = GraphTokenizer(20, 3, code_dim=8, num_codes=16, hidden=16, dropout=0.0)
    opt = torch.optim.Adam(tok.parameters(), lr=0.02)

    def step():
        out = tok.run(x, ei, num_edge_samples=64)
        loss = F.cross_entropy(out.logits, y) + sum(out.losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item(), out

    first, out = step()
    assert out.logits.shape == (60, 3) and out.embeddings.shape == (60, 8) and out.codes.shape == (60,)
    assert set(out.losses) == {"commit", "feature", "edge"}
    for _ in range(60):
        last, _ = step()
    assert last < first
    tok.eval()
    out = tok.run(x, ei)
    assert set(out.losses) == {"commit"}
    assert torch.allclose(out.embeddings.norm(dim=-1), torch.ones(60), atol=1e-5)
    assert torch.equal(out.codes, tok.vq.assign(out.embeddings))


# ----------------------------------------------------------------------------- splits

def test_planetoid_split_sizes_disjoint_deterministic_and_rare_classes():
    y = torch.cat([torch.zeros(100), torch.ones(60), torch.full((3,), 2), torch.full((1,), 3)]).long()
    a = planetoid_split(y, per_class=20, num_val=30, seed=1)
    assert len(a.train) == 20 + 20 + 1 + 0 and len(a.val) == 30 and len(a.test) == len(y) - 41 - 30
    assert len(torch.cat([a.train, a.val, a.test]).unique()) == len(y)
    assert torch.equal(a.train, planetoid_split(y, per_class=20, num_val=30, seed=1).train)
    assert not torch.equal(a.train, planetoid_split(y, per_class=20, num_val=30, seed=2).train)
    with pytest.raises(ValueError, match="no test nodes"):
        planetoid_split(y, num_val=1000)


def test_inductive_split_hides_held_out_nodes_completely():
    x, ei, y = _graph(n=80, isolated=0)
    split = planetoid_split(y, per_class=5, num_val=10, seed=0)
    ind = inductive_split(split, ei, 80, rate=0.2, seed=0)
    assert len(ind.test_ind) == round(0.2 * len(split.test))
    assert not set(ind.test_ind.tolist()) & set(ind.observed.tolist())
    assert len(ind.observed) + len(ind.test_ind) == 80
    assert torch.equal(ind.observed[ind.obs_train], split.train) and torch.equal(ind.observed[ind.obs_val], split.val)
    # every observed edge is a real edge between observed nodes; none touches a held-out node
    real = {tuple(e) for e in ei.t().tolist()}
    mapped = ind.observed[ind.obs_edge_index]
    assert all(tuple(e) in real for e in mapped.t().tolist())
    assert not set(mapped.flatten().tolist()) & set(ind.test_ind.tolist())
    expected = sum(1 for a, b in ei.t().tolist() if a not in set(ind.test_ind.tolist()) and b not in set(ind.test_ind.tolist()))
    assert ind.obs_edge_index.shape[1] == expected
    with pytest.raises(ValueError, match="rate"):
        inductive_split(split, ei, 80, rate=1.0)


def test_observed_subgraph_matches_pyg_subgraph():
    _, ei, _ = _graph(n=50)
    observed = torch.randperm(50, generator=torch.Generator().manual_seed(0))[:30].sort().values
    ref, _ = subgraph(observed, ei, relabel_nodes=True, num_nodes=50)
    assert torch.equal(observed_subgraph(ei, observed, 50), ref)


# ----------------------------------------------------------------------------- benchmark

def test_benchmark_rows_and_ratios(tmp_path):
    torch.manual_seed(0)
    x, ei, _ = _graph(n=60)
    models = {"MLP": (NodeMLP(30, 4, hidden=(8,)), None), "GCN": (GNN("gcn", 30, 4, hidden=8), 2)}
    rows = graph_bench.benchmark(models, x, ei, queries=5, repeats=2)
    assert [(r["setting"], r["model"]) for r in rows] == [("full", "MLP"), ("node", "MLP"), ("full", "GCN"), ("node", "GCN")]
    assert all(r["total_ms"] > 0 for r in rows) and rows[1]["speedup_vs_mlp"] == 1.0
    assert rows[1]["mean_subgraph_nodes"] == 1 and rows[3]["mean_subgraph_nodes"] >= 1
    assert "| node | GCN |" in graph_bench.table(rows)
    path = graph_bench.write_csv(rows, tmp_path / "g.csv")
    assert path.read_text().startswith("device,date,commit")
