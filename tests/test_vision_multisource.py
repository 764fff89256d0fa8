"""Notebook 01d's package code: composed scenes, the shifted pool, segmentation and transfer losses,
task similarity (P29), KD3's selection (P64), LAD's label channel (P55)."""

import pytest
import torch
import torch.nn.functional as F

import cookbook  # noqa: F401
from cookbook.data.augment import mix_distribution, random_shift
from cookbook.data.images import load_sklearn_digits
from cookbook.data.scenes import INK, SCENE_SHAPE, compose_scenes, normalize_scenes
from cookbook.data.shifted import web_style_shift
from cookbook.losses import (
    classifier_alignment_loss,
    cwd_loss,
    dual_path_loss,
    instance_contrastive_loss,
    kd_loss,
    multi_source_distill_loss,
    weighted_feature_loss,
    weighted_kd_loss,
)
from cookbook.methods.vision import (
    kd3_instance_weights,
    ncc_loo_accuracy,
    probe_pseudo_labels,
    source_weights,
)
from cookbook.metrics import mean_iou
from cookbook.models import AlignedStudent, PooledCNN, TinyUNet, label_assist_channel


def test_sklearn_digits_are_28x28_and_split():
    all_, train, test = (load_sklearn_digits(s) for s in ("all", "train", "test"))
    assert all_.X.shape == (1797, 28, 28) and all_.X.dtype == torch.uint8
    assert len(train.y) + len(test.y) == 1797 and set(test.y.tolist()) == set(range(10))
    assert all_.X[:, :4].max() == 0                                         # the 20 x 20 digit sits inside a 4 px frame


def test_composed_scenes_labels_follow_the_ink():
    g = torch.Generator().manual_seed(0)
    garments = (torch.rand(6, 28, 28, generator=g) * 255).to(torch.uint8)
    digits = (torch.rand(6, 28, 28, generator=g) * 255).to(torch.uint8)
    X, M = compose_scenes(garments, torch.arange(6) % 10, digits, torch.arange(6), n=20, seed=1)
    assert X.shape == (20, *SCENE_SHAPE) and M.shape == (20, *SCENE_SHAPE)
    assert bool((X[M > 0] > INK).all())                                      # every object pixel is ink ...
    assert bool(((X > INK) & (M == 0)).any())                                # ... but clutter is ink too
    Xc, Mc = compose_scenes(garments, torch.arange(6) % 10, digits, torch.arange(6), n=20, seed=1, clutter=0.0)
    assert torch.equal(Mc > 0, Xc > INK)                                     # without clutter: labelled exactly where there is ink
    for m in M:
        present = set(m.unique().tolist()) - {0}
        assert any(1 <= c <= 10 for c in present) and any(11 <= c <= 20 for c in present)
    X2, M2 = compose_scenes(garments, torch.arange(6) % 10, digits, torch.arange(6), n=20, seed=1)
    assert torch.equal(X, X2) and torch.equal(M, M2)
    assert normalize_scenes(X).shape == (20, 1, *SCENE_SHAPE)
    with pytest.raises(ValueError, match="uint8"):
        compose_scenes(garments.float(), torch.arange(6), digits, torch.arange(6), n=2)


def test_web_style_shift_is_deterministic_and_changes_images():
    X = (torch.rand(8, 28, 28) * 255).to(torch.uint8)
    a, b = web_style_shift(X, seed=3), web_style_shift(X, seed=3)
    assert torch.equal(a, b) and a.dtype == torch.uint8 and not torch.equal(a, X)
    with pytest.raises(ValueError, match="uint8"):
        web_style_shift(X.float())


def test_mix_distribution_keeps_content_and_mixes_statistics():
    h = torch.randn(4, 3, 5, 5) * 2 + 1
    perm = torch.tensor([1, 0, 3, 2])
    assert torch.allclose(mix_distribution(h, perm, torch.ones(4)), h, atol=1e-5)
    out = mix_distribution(h, perm, torch.zeros(4))
    assert torch.allclose(out.mean((2, 3)), h[perm].mean((2, 3)), atol=1e-5)
    with pytest.raises(ValueError, match="perm"):
        mix_distribution(h, perm[:2], torch.ones(4))


def test_random_shift_keeps_shape_and_background():
    x = torch.zeros(3, 1, 28, 28) - 1
    x[:, :, 10:18, 10:18] = 1
    out = random_shift(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.sum() == x.sum()                     # a 2 px shift keeps the centred square


def test_cwd_loss_reference_and_scaling():
    s, t = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    assert cwd_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    ps, pt = F.log_softmax(s.flatten(2), -1), F.log_softmax(t.flatten(2), -1)
    want = (pt.exp() * (pt - ps)).sum(-1).mean()
    assert cwd_loss(s, t, T=1.0).item() == pytest.approx(want.item(), rel=1e-5)
    s.requires_grad_(True)
    cwd_loss(s, t).backward()
    assert s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="temperature"):
        cwd_loss(s, t, T=0.0)
    with pytest.raises(ValueError, match="same shape"):
        cwd_loss(s, t[:, :2])


def test_dual_path_loss_terms():
    za, zb = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    masks = torch.randint(0, 4, (2, 3, 3))
    ce = F.cross_entropy(za, masks) + F.cross_entropy(zb, masks)
    assert dual_path_loss(za, zb, masks, consistency=0.0).item() == pytest.approx(ce.item())
    full = dual_path_loss(za, zb, masks)
    assert full.item() == pytest.approx((ce + 5 * (cwd_loss(za, zb) + cwd_loss(zb, za))).item(), rel=1e-5)
    with pytest.raises(ValueError, match="masks"):
        dual_path_loss(za, zb, masks + 4)


def test_label_assist_channel_codes():
    masks = torch.tensor([[[0, 1], [2, 2]], [[1, 1], [0, 2]]])
    zero = label_assist_channel(masks, 3, codes="zero")
    assert zero.shape == (2, 1, 2, 2) and zero.abs().sum() == 0
    fixed = label_assist_channel(masks, 3, codes="fixed", noise=0.0, scale=1.0)
    assert fixed[0, 0, 0, 1] == fixed[1, 0, 0, 0] == pytest.approx(0.0)          # code_1 = (1 - 1) / 10, same per image
    rnd = label_assist_channel(masks, 3, noise=0.0, scale=1.0, generator=torch.Generator().manual_seed(0))
    assert rnd[0, 0, 1, 0] == rnd[0, 0, 1, 1]                                 # same class, same code within an image
    with pytest.raises(ValueError, match="codes"):
        label_assist_channel(masks, 3, codes="onehot")


def test_mean_iou_by_hand():
    target = torch.tensor([[[0, 0, 1, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1]]])
    assert mean_iou(pred, target, 3) == pytest.approx((1 / 2 + 2 / 3) / 2)       # class 2 absent from both: skipped
    logits = F.one_hot(pred, 3).permute(0, 3, 1, 2).float()
    assert mean_iou(logits, target, 3) == mean_iou(pred, target, 3)


def test_unet_and_students_shapes():
    assert TinyUNet(width=4)(torch.randn(2, 1, 32, 56)).shape == (2, 21, 32, 56)
    with pytest.raises(ValueError, match="divisible"):
        TinyUNet(width=4)(torch.randn(2, 1, 30, 56))
    s = AlignedStudent()
    x = torch.randn(3, 1, 28, 28)
    assert s(x).shape == (3, 10) and s.features(x).shape == (3, 128, 7, 7)
    assert s.head.weight.shape == (10, 128 * 49)
    assert s(x, mix=(torch.tensor([1, 2, 0]), torch.rand(3))).shape == (3, 10)
    p = PooledCNN(num_classes=5, extra_dims=(64, 2))
    assert p(x).shape == (3, 5) and [h(p.features(x)).shape[1] for h in p.extra_heads] == [64, 2]


def test_multi_source_loss_one_hot_weights_pick_one_source():
    torch.manual_seed(0)
    sf = [torch.randn(4, 6), torch.randn(4, 3)]
    zf = [torch.randn(4, 6), torch.randn(4, 3)]
    logits = torch.randn(4, 5)
    probs = [torch.softmax(torch.randn(4, 5), -1) for _ in range(2)]
    both = multi_source_distill_loss(sf, zf, logits, probs, torch.tensor([0.5, 0.5]))
    one = [multi_source_distill_loss(sf, zf, logits, probs, w) for w in (torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))]
    assert both.item() == pytest.approx(0.5 * one[0].item() + 0.5 * one[1].item(), rel=1e-5)
    feat = (F.normalize(sf[0], dim=-1) - F.normalize(zf[0], dim=-1)).pow(2).sum(-1).mean()
    kl = (probs[0] * (probs[0].log() - F.log_softmax(logits, -1))).sum(-1).mean()
    assert one[0].item() == pytest.approx((feat + kl).item(), rel=1e-5)
    with pytest.raises(ValueError, match="source_weights"):
        multi_source_distill_loss(sf, zf, logits, probs, torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="one student feature"):
        multi_source_distill_loss(sf[:1], zf, logits, probs, torch.tensor([1.0, 0.0]))


def test_weighted_losses():
    s, t = torch.randn(5, 10), torch.randn(5, 10)
    assert weighted_kd_loss(s, t, torch.ones(5), T=2.0).item() == pytest.approx(kd_loss(s, t, T=2.0).item(), rel=1e-5)
    w = torch.tensor([1.0, 0, 0, 0, 0])
    assert weighted_kd_loss(s, t, w, T=2.0).item() == pytest.approx(kd_loss(s[:1], t[:1], T=2.0).item(), rel=1e-5)
    assert weighted_kd_loss(s, t, torch.zeros(5)).item() == 0.0
    fs, ft = torch.randn(5, 2, 3), torch.randn(5, 2, 3)
    assert weighted_feature_loss(fs, ft, w).item() == pytest.approx((fs[0] - ft[0]).pow(2).mean().item())
    W, V = torch.randn(3, 4), torch.randn(3, 4)
    assert classifier_alignment_loss(W, V).item() == pytest.approx((W - V).pow(2).sum().item() / 3)
    b, c = torch.randn(3), torch.randn(3)
    assert classifier_alignment_loss(W, V, b, c).item() == pytest.approx(((W - V).pow(2).sum() + (b - c).pow(2).sum()).item() / 3)
    with pytest.raises(ValueError, match="weights"):
        weighted_kd_loss(s, t, torch.ones(4))


def test_instance_contrastive_loss():
    z = torch.eye(4) * 5
    assert instance_contrastive_loss(z, z, tau=0.1).item() < 1e-3
    assert instance_contrastive_loss(z, z[[1, 2, 3, 0]], tau=0.1).item() > 5
    with pytest.raises(ValueError, match="tau"):
        instance_contrastive_loss(z, z, tau=0.0)


def test_ncc_loo_accuracy_and_source_weights():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=g) * 5
    labels = torch.arange(3).repeat_interleave(4)
    separable = centers[labels] + 0.1 * torch.randn(12, 8, generator=g)
    assert ncc_loo_accuracy(separable, labels) == 1.0
    noise = torch.randn(12, 8, generator=g)
    assert ncc_loo_accuracy(noise, labels) < 1.0
    # leave-one-out matters: a class of 2 identical points with one far outlier among them is still checked
    with pytest.raises(ValueError, match="at least 2"):
        ncc_loo_accuracy(separable[:9], torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2]))
    scores = torch.tensor([0.2, 0.9, 0.5])
    assert source_weights(scores, 0.0).tolist() == [0.0, 1.0, 0.0]
    w = source_weights(scores, 0.1)
    assert w.sum().item() == pytest.approx(1.0) and w.argmax() == 1
    assert torch.allclose(source_weights(scores, 1e6), torch.full((3,), 1 / 3), atol=1e-4)
    with pytest.raises(ValueError, match="tau"):
        source_weights(scores, -1.0)


def test_probe_pseudo_labels_are_probabilities():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(20, 5, generator=g)
    labels = torch.arange(4).repeat(5)
    probs = probe_pseudo_labels(feats, labels, feats[:7])
    assert probs.shape == (7, 4) and torch.allclose(probs.sum(-1), torch.ones(7), atol=1e-5)


def test_kd3_instance_weights():
    t = torch.tensor([[5.0, 0, 0], [0.2, 0.1, 0.0]])
    s = torch.tensor([[0.0, 5.0, 0], [0.2, 0.1, 0.0]])
    w0 = kd3_instance_weights(t, s, progress=0.0, threshold=0.5)
    assert w0[0].item() == pytest.approx(torch.softmax(t[0], 0).max().item()) and w0[1] == 0
    w1 = kd3_instance_weights(t, s, progress=1.0, threshold=0.5)             # the student now disagrees: weight drops
    assert w1[0] < w0[0]
    with pytest.raises(ValueError, match="progress"):
        kd3_instance_weights(t, s, progress=1.5, threshold=0.5)
