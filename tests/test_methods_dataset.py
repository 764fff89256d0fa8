"""Dataset-distillation synthesis loops, DSA, the ConvNet and the evaluation protocol (notebook 03a)."""

import json

import pytest
import torch

from cookbook.data.augment import dsa_augment
from cookbook.methods import dataset as dd
from cookbook.models.convnet import ConvNet, flat_params, functional_forward


def _pool(n_per_class=12, classes=10, seed=0):
    """Easy synthetic 'images': class c is a bright square at a class-specific place, plus noise."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n_per_class * classes, 1, 28, 28, generator=g) * 0.3
    y = torch.arange(classes).repeat_interleave(n_per_class)
    for c in range(classes):
        r, col = 2 + 2 * (c // 5) * 5, 2 + (c % 5) * 5
        X[y == c, :, r:r + 6, col:col + 5] += 2.0
    return X, y


# ----------------------------------------------------------------------------- DSA


def test_dsa_is_siamese_deterministic_and_differentiable():
    x = torch.randn(6, 1, 28, 28, requires_grad=True)
    for seed in range(24):                                   # every operation gets drawn
        a = dsa_augment(x, seed)
        assert a.shape == x.shape
        assert torch.equal(a, dsa_augment(x, seed))          # same seed, same result
        assert torch.allclose(a[:2], dsa_augment(x[:2], seed), atol=1e-6)   # same params at any batch size
        a.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_dsa_flip_and_bad_input():
    x = torch.arange(28.0).repeat(2, 1, 28, 1)               # (2, 1, 28, 28), varies along width
    outs = {tuple(dsa_augment(x, s, strategy="flip")[0, 0, 0, :2].tolist()) for s in range(20)}
    assert outs == {(0.0, 1.0), (27.0, 26.0)}                # identity or mirror, nothing else
    with pytest.raises(ValueError, match="strategy"):
        dsa_augment(x, 0, strategy="blur")
    with pytest.raises(ValueError):
        dsa_augment(x[0], 0)


# ----------------------------------------------------------------------------- ConvNet


def test_convnet_shapes_and_functional_forward():
    net = ConvNet(width=8)
    x = torch.randn(3, 1, 28, 28)
    assert net(x).shape == (3, 10) and net.embed(x).shape == (3, 8 * 4 * 4)   # 28 padded to 32 -> 4 x 4
    flat = flat_params(net)
    assert torch.allclose(functional_forward(net, flat, x), net(x), atol=1e-6)
    assert torch.allclose(dd.network_from(flat, width=8)(x), net.eval()(x), atol=1e-6)
    with pytest.raises(ValueError, match="parameters"):
        functional_forward(net, flat[:-1], x)
    with pytest.raises(ValueError):
        ConvNet(width=8, depth=6)


# ----------------------------------------------------------------------------- selection baselines


def test_random_subset_and_herding():
    X, y = _pool()
    r = dd.random_subset(X, y, ipc=3, seed=1)
    assert r.images.shape == (30, 1, 28, 28) and r.labels.tolist() == [c for c in range(10) for _ in range(3)]
    assert all(any(torch.equal(img, x) for x in X[y == c]) for img, c in zip(r.images, r.labels))
    h = dd.herding(X, y, ipc=1, embed=lambda x: x.flatten(1))
    for c in range(10):                                      # ipc=1: the image nearest the class mean
        members = X[y == c].flatten(1)
        best = (members - members.mean(0)).norm(dim=1).argmin()
        assert torch.equal(h.images[c], X[y == c][best])
    with pytest.raises(ValueError, match="at least ipc"):
        dd.random_subset(X, y, ipc=13)


def test_kmeans_and_representative_init():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    pts = torch.cat([c + 0.1 * torch.randn(20, 2, generator=g) for c in centres])
    got = dd.kmeans(pts, 3, seed=0)
    assert torch.cdist(got, centres).min(0).values.max() < 0.2
    X, y = _pool()
    init = dd.representative_init(X, y, ipc=2, logits_fn=lambda x: x.flatten(1)[:, :50])
    assert init.shape == (20, 1, 28, 28)
    for c in range(10):                                      # two distinct real images of class c
        chosen = init[2 * c:2 * c + 2]
        assert not torch.equal(chosen[0], chosen[1])
        assert all(any(torch.equal(img, x) for x in X[y == c]) for img in chosen)


# ----------------------------------------------------------------------------- DM, DC, DSA, MTT, KRR-ST


def test_distribution_matching_loss_falls():
    X, y = _pool()
    syn = dd.distribution_matching(X, y, ipc=1, iterations=15, batch_real=12, dsa=False, width=8, seed=0)
    assert syn.images.shape == (10, 1, 28, 28) and torch.isfinite(syn.images).all()
    losses = syn.extra["loss"]
    assert sum(losses[-5:]) < sum(losses[:5])                # the matching loss falls
    assert syn.seconds > 0 and syn.labels.tolist() == list(range(10))


@pytest.mark.parametrize("dsa", [False, True])
def test_gradient_matching_runs_and_loss_falls(dsa):
    X, y = _pool()
    syn = dd.gradient_matching(X, y, ipc=1, iterations=12, outer_loop=1, inner_loop=1, batch_real=12,
                               dsa=dsa, width=8, seed=0)
    assert syn.name == ("DSA" if dsa else "DC") and torch.isfinite(syn.images).all()
    losses = syn.extra["loss"]
    assert len(losses) == 12 and sum(losses[-4:]) < sum(losses[:4])


def test_experts_cache_roundtrip_and_smooth_experts(tmp_path, monkeypatch):
    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path))
    X, y = _pool(n_per_class=6)
    cfg = dd.ExpertConfig(num_experts=2, epochs=3, lr=0.05, batch_size=30, width=8)
    trajs, info = dd.expert_trajectories(X, y, cfg)
    assert trajs.shape == (2, 4, flat_params(ConvNet(width=8)).numel()) and info["source"] == "trained"
    again, info2 = dd.expert_trajectories(X, y, cfg)
    assert info2["source"] == "cache" and torch.equal(trajs, again)
    smooth = dd.train_expert(X, y, dd.ExpertConfig(epochs=2, batch_size=30, width=8, smooth=True, gp_batch=8), seed=0)
    assert smooth.shape == (3, trajs.shape[2]) and torch.isfinite(smooth).all()
    assert not torch.equal(smooth[1], dd.train_expert(X, y, dd.ExpertConfig(epochs=2, batch_size=30, width=8), seed=0)[1])


def test_trajectory_matching_and_p67_switches():
    X, y = _pool(n_per_class=6)
    cfg = dd.ExpertConfig(num_experts=1, epochs=3, lr=0.05, batch_size=30, width=8)
    trajs = torch.stack([dd.train_expert(X, y, cfg, seed=0)])
    for kw in ({}, {"balance": True, "intermediate": True, "perturb": True, "momentum": 0.9}):
        syn = dd.trajectory_matching(X, y, 1, trajs, iterations=4, syn_steps=4, expert_epochs=2, max_start_epoch=1,
                                     width=8, seed=0, **kw)
        assert torch.isfinite(syn.images).all() and all(a > 0 for a in syn.extra["syn_lr"])
        assert all(0 <= v < 10 for v in syn.extra["loss"])
    with pytest.raises(ValueError, match="epochs"):
        dd.trajectory_matching(X, y, 1, trajs, iterations=1, syn_steps=2, expert_epochs=2, max_start_epoch=3, width=8)
    with pytest.raises(ValueError, match="parameters"):
        dd.trajectory_matching(X, y, 1, trajs, iterations=1, syn_steps=2, expert_epochs=2, max_start_epoch=1, width=16)


def test_perturb_weights_touches_only_conv_kernels():
    net = ConvNet(width=8)
    flat = flat_params(net)
    out = dd.perturb_weights(flat, net, alpha=1.0, generator=torch.Generator().manual_seed(0))
    start = 0
    for p in net.parameters():
        a, b = flat[start:start + p.numel()], out[start:start + p.numel()]
        if p.dim() == 4:
            assert not torch.equal(a, b) and (b - a).norm() <= a.abs().max() + 1e-6   # |d_i/||d||| <= 1
        else:
            assert torch.equal(a, b)
        start += p.numel()


def test_krr_st_runs_and_keeps_targets():
    X, y = _pool(n_per_class=6)
    target = dd.train_ssl_target(X, epochs=1, batch_size=30, width=8)
    syn = dd.krr_st(X, y, 1, target, iterations=5, num_models=2, online_iterations=3, batch_real=20, width=8)
    assert syn.images.shape == (10, 1, 28, 28) and syn.extra["targets"].shape == (10, target.feature_dim)
    assert all(torch.isfinite(torch.tensor(syn.extra["loss"])))


# ----------------------------------------------------------------------------- evaluation protocol


def test_evaluate_synset_is_seeded_learns_and_checks_input():
    X, y = _pool()
    Xt, yt = _pool(n_per_class=5, seed=1)
    proto = dd.EvalProtocol(steps=40, width=8)
    sub = dd.random_subset(X, y, ipc=3)
    a = dd.evaluate_synset(sub.images, sub.labels, Xt, yt, seed=0, protocol=proto)
    assert a == dd.evaluate_synset(sub.images, sub.labels, Xt, yt, seed=0, protocol=proto)
    assert a > 0.5                                            # far above 10% chance on this easy task
    teacher = ConvNet(width=8).eval()
    grid = dd.evaluate_grid(sub, Xt, yt, seeds=[0, 1], protocol=dd.EvalProtocol(steps=5, width=8), teacher=teacher)
    assert set(grid) == set(dd.GRID) and all(len(v) == 2 for v in grid.values())
    with pytest.raises(ValueError, match="teacher"):
        dd.evaluate_synset(sub.images, sub.labels, Xt, yt, seed=0, protocol=proto, soft=True)
    with pytest.raises(ValueError, match="aligned"):
        dd.evaluate_synset(sub.images, sub.labels[:-1], Xt, yt, seed=0, protocol=proto)


def test_measure_reports_time_and_memory():
    with dd.measure() as m:
        big = torch.ones(2_000_000)
        big.add_(1)
    assert m["seconds"] > 0 and m["peak_mb"] >= 0


def test_committed_expert_trajectories_are_in_the_manifest_and_match_the_notebook_config():
    from safetensors import safe_open

    from cookbook import assets

    manifest = assets.read_manifest()
    for kind, cfg in dd.NOTEBOOK_EXPERTS.items():
        rel = dd.EXPERT_ASSETS.format(kind=kind)
        path = assets.asset(rel)                              # present, listed and sha256-checked
        assert manifest[rel][1] == path.stat().st_size <= 8 * 2**20
        with safe_open(str(path), "pt") as f:
            meta, shape = f.metadata(), f.get_slice("trajectories").get_shape()
        assert shape == [cfg.num_experts, cfg.epochs + 1, flat_params(ConvNet(width=cfg.width)).numel()]
        stored = json.loads(meta["config"])                  # the plain file predates the unused gp_batch field
        assert stored == {k: v for k, v in cfg.__dict__.items() if k in stored}
        assert set(cfg.__dict__) - set(stored) <= ({"gp_batch"} if not cfg.smooth else set())


def test_load_pool_refuses_more_than_the_subset_holds(monkeypatch):
    from cookbook.data import images

    found = images.Found("assets subset", images.ASSETS / images.FASHION_SUBSET_ASSET)
    monkeypatch.setattr(images, "locate_fashion_mnist", lambda online=False: found)
    with pytest.raises(FileNotFoundError, match="make data"):
        dd.load_pool(n=10_000)
