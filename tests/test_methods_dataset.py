"""Dataset-distillation synthesis loops, DSA, the ConvNet and the evaluation protocol (notebooks 03a, 03c)."""

import copy
import functools
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


# ----------------------------------------------------------------------------- SRe2L, CV-DD (P34), INFER (P68)


def test_convnet_batch_norm_option_and_mixup():
    net = ConvNet(width=4, norm="batch")
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 3
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in net.modules())
    with pytest.raises(ValueError, match="norm"):
        ConvNet(norm="layer")
    from cookbook.data.augment import mixup

    x = torch.arange(4.0).view(4, 1, 1, 1)
    mixed, perm, lam = mixup(x, 0.8, generator=torch.Generator().manual_seed(0))
    again = mixup(x, 0.8, generator=torch.Generator().manual_seed(0))
    assert 0 <= lam <= 1 and sorted(perm.tolist()) == [0, 1, 2, 3] and again[2] == lam and torch.equal(again[1], perm)
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[perm])
    with pytest.raises(ValueError):
        mixup(x, 0.0)


@functools.cache
def _bn_teacher_cached(seed):
    X, y = _pool()
    torch.manual_seed(seed)
    net = ConvNet(width=4, norm="batch")
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    for _ in range(10):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
    return net.eval().requires_grad_(False)


def _bn_teacher(X, y, seed=0):
    """A small BatchNorm ConvNet fitted a few steps on ``_pool()``: running statistics and a signal
    (trained once per seed; tests must not change it)."""
    return _bn_teacher_cached(seed)


def test_bn_inputs_records_call_order_and_removes_hooks():
    net = ConvNet(width=4, norm="batch").eval()
    with dd.bn_inputs(net) as seen:
        net(torch.randn(2, 1, 28, 28))
    assert [m for m, _ in seen] == [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [tuple(f.shape) for _, f in seen] == [(2, 4, 32, 32), (2, 4, 16, 16), (2, 4, 8, 8)]
    net(torch.randn(2, 1, 28, 28))
    assert len(seen) == 3                                       # hooks are gone after the block
    with pytest.raises(ValueError, match="BatchNorm"):
        with dd.bn_inputs(ConvNet(width=4)):                    # instance norm: nothing to match
            pass


def test_batch_statistics_equal_train_mode_and_leave_running_stats():
    X, y = _pool()
    net = _bn_teacher(X, y)
    bn = net.features[1]
    before = (bn.running_mean.clone(), bn.running_var.clone())
    x = X[:16]
    with dd.batch_statistics(net):
        got = net(x)
    want = copy.deepcopy(net).train()(x)        # train mode: batch statistics (and it updates them)
    assert torch.allclose(got, want, atol=1e-5)
    assert not net.training and torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert not torch.allclose(net(x), got, atol=1e-3)            # eval mode again: stored statistics


def test_committee_vote_equal_weights_is_the_logit_mean_and_bssl_splits_the_batch():
    X, y = _pool()
    members = [_bn_teacher(X, y, seed=s) for s in (0, 1)]
    x = X[:10]
    cv = dd.CommitteeVote(members)
    assert torch.allclose(cv(x), (members[0](x) + members[1](x)) / 2, atol=1e-5)
    bssl = dd.CommitteeVote(members, [0.25, 0.75], batch_stats=True, chunks=2)
    halves = []
    for m in members:
        with dd.batch_statistics(m):
            halves.append(torch.cat([m(x[:5]), m(x[5:])]))
    assert torch.allclose(bssl(x), 0.25 * halves[0] + 0.75 * halves[1], atol=1e-5)
    bssl.train()
    assert not any(m.training for m in members)                 # a committee never trains its members
    with pytest.raises(ValueError, match="weights"):
        dd.CommitteeVote(members, [1.0])


def test_sre2l_recovery_lowers_its_loss_keeps_range_and_is_a_committee_of_one():
    X, y = _pool()
    t = _bn_teacher(X, y)
    syn = dd.sre2l(X, y, 2, t, iterations=20, init="real", augment=True, seed=0)
    assert syn.images.shape == (20, 1, 28, 28) and syn.labels.tolist() == [c for c in range(10) for _ in range(2)]
    loss = syn.extra["loss"]
    assert sum(loss[-5:]) < sum(loss[:5])
    assert syn.images.min() >= X.min() - 1e-6 and syn.images.max() <= X.max() + 1e-6
    g = torch.Generator().manual_seed(0)
    same = dd.recover([t], 10, 2, committees=[[0], [0]], weights=[[1.0], [1.0]], iterations=20, augment=True,
                      init_images=dd._init_images(X, y, 2, g), pixel_range=(float(X.min()), float(X.max())), seed=0)
    assert torch.allclose(same.images, syn.images)
    noise = dd.sre2l(X, y, 1, t, iterations=3, seed=0)
    assert noise.name == "SRe2L" and noise.images.shape == (10, 1, 28, 28)
    with pytest.raises(ValueError, match="committees"):
        dd.recover([t], 10, 2, committees=[[0]], weights=[[1.0]], iterations=2)
    with pytest.raises(ValueError, match="index"):
        dd.recover([t], 10, 1, committees=[[1]], weights=[[1.0]], iterations=2)


def test_recovered_batches_are_independent_of_each_other():
    """Optimising all synthetic batches at once equals optimising each alone (Adam per pixel, summed loss)."""
    X, y = _pool()
    t = _bn_teacher(X, y)
    g = torch.Generator().manual_seed(3)
    init = dd._init_images(X, y, 2, g)
    both = dd.recover([t], 10, 2, committees=[[0], [0]], weights=[[1.0], [1.0]], iterations=8, jitter=0,
                      init_images=init, seed=0)
    first = dd.recover([t], 10, 1, committees=[[0]], weights=[[1.0]], iterations=8, jitter=0,
                       init_images=init.view(10, 2, 1, 28, 28)[:, 0], seed=0)
    assert torch.allclose(both.images.view(10, 2, 1, 28, 28)[:, 0], first.images, atol=1e-5)


def test_cv_dd_committee_schedule():
    priors = [63.0, 65.3, 68.5, 67.6]
    com, w = dd.cv_dd_committees(priors, 1)
    assert com == [[2, 3]]                                       # the two best priors at IPC 1
    assert w[0] == pytest.approx(torch.softmax(torch.tensor([68.5, 67.6]) / 5, 0).tolist())
    com, w = dd.cv_dd_committees(priors, 8)
    assert com[:6] == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]] and com[6:] == [[0, 1], [0, 2]]
    assert all(sum(v) == pytest.approx(1.0) for v in w)
    with pytest.raises(ValueError):
        dd.cv_dd_committees(priors[:1], 2)


def test_cv_dd_runs_and_shares_sre2l_plus_plus_init():
    X, y = _pool()
    ts = [_bn_teacher(X, y, seed=s) for s in (0, 1, 2)]
    syn = dd.cv_dd(X, y, 2, ts, [60.0, 70.0, 65.0], iterations=12, seed=0)
    assert syn.images.shape == (20, 1, 28, 28) and syn.extra["committees"] == [[0, 1], [0, 2]]
    assert sum(syn.extra["loss"][-3:]) < sum(syn.extra["loss"][:3])
    ref = dd.sre2l(X, y, 2, ts[0], iterations=1, init="real", augment=True, seed=0)   # same real starting images
    assert (syn.images - ref.images).abs().mean() < (syn.images - X[:20]).abs().mean()


def test_infer_budget_matches_the_official_arithmetic():
    assert dd.infer_budget(10, 100, 4) == (9, 936, 4500)         # CIFAR-100, IPC 10: ipc_init 9
    assert dd.infer_budget(10, 10, 4) == (7, 98, 350)            # 10 classes: 70 images + 28 UFCs <= 100
    assert dd.infer_budget(50, 10, 4) == (35, 490, 1750)
    assert dd.infer_budget(1, 10, 4)[0] == 0                     # no INFER set fits IPC 1 with 10 classes
    for ipc in (2, 5, 10, 50):
        k, stored, _ = dd.infer_budget(ipc, 10, 3)
        assert stored <= ipc * 10


def test_infer_composites_share_one_compensator_per_batch_and_member():
    X, y = _pool()
    ts = [_bn_teacher(X, y, seed=s) for s in (0, 1)]
    syn = dd.infer(X, y, 2, ts, iterations=5, seed=0)           # K = int(2 / 1.2) = 1
    k = syn.extra["ipc_init"]
    assert k == 1 and syn.images.shape == (10 * 3, 1, 28, 28) and syn.extra["stored_images"] == 12
    assert syn.labels.tolist() == [c for c in range(10) for _ in range(3)]
    per_class = syn.images.view(10, 3, 1, 28, 28)
    base, ufcs = syn.extra["base"], syn.extra["ufcs"]            # (10, ...), (2 members, 1 batch, 1, 28, 28)
    assert torch.allclose(per_class[:, 0], base)
    lo, hi = float(X.min()), float(X.max())
    for m in range(2):
        assert torch.allclose(per_class[:, 1 + m], (base + ufcs[m, 0]).clamp(lo, hi), atol=1e-6)
    with pytest.raises(ValueError, match="K = 0"):
        dd.infer(X, y, 1, ts, iterations=2)


def test_static_labels_equal_dynamic_ones_without_augmentation_and_mixup_runs():
    X, y = _pool()
    t = _bn_teacher(X, y)
    syn = dd.random_subset(X, y, 2, seed=0)
    p = dd.EvalProtocol(steps=4, batch=8, width=4)
    kw = dict(seed=0, protocol=p, soft=True, teacher=t)
    assert dd.evaluate_synset(syn.images, syn.labels, X, y, **kw) == dd.evaluate_synset(syn.images, syn.labels, X, y, static=True, **kw)
    for cell in (dict(static=True, mix=0.8, aug=True), dict(mix=0.8), dict(soft=False, teacher=None, mix=0.8)):
        acc = dd.evaluate_synset(syn.images, syn.labels, X, y, **{**kw, **cell})
        assert 0.0 <= acc <= 1.0
    with pytest.raises(ValueError, match="static"):
        dd.evaluate_synset(syn.images, syn.labels, X, y, seed=0, protocol=p, static=True)
    cells = [("hard", {}), ("committee", {"soft": True, "teacher": dd.CommitteeVote([t], batch_stats=True)})]
    grid = dd.evaluate_grid(syn, X, y, seeds=[0, 1], protocol=p, cells=cells)
    assert list(grid) == ["hard", "committee"] and all(len(v) == 2 for v in grid.values())
