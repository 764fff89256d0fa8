"""Token / feature losses of notebook 01b (TRG arXiv 2306.12442, DMAE arXiv 2208.12256) and their helpers."""

import math

import pytest
import torch
import torch.nn.functional as F

from cookbook.data import class_balanced_weights, long_tailed_counts, long_tailed_indices
from cookbook.losses import (
    contextual_loss,
    masked_reconstruction_loss,
    token_node_loss,
    token_relation_loss,
    visible_feature_loss,
)
from cookbook.models import (
    CNNTokens,
    MaskedAutoencoder,
    SmallCNN,
    StageBranches,
    block_outputs,
    cls_dist_logits,
    cnn_tokens,
    gather_patches,
    mask_patches,
    patchify,
    random_keep,
    tiny_mixer,
    tiny_vit,
    visible_block_outputs,
)


def _tokens(b=3, n=5, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, d, generator=g), torch.randn(b, n, d, generator=g)


# --- TRG -------------------------------------------------------------------------------------

def test_node_loss_value_and_scale_invariance():
    s = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    t = torch.tensor([[[0.0, 3.0], [0.0, 1.0]]])
    # token 0: orthogonal -> |e1 - e2|^2 = 2; token 1: same direction -> 0; mean 1
    assert token_node_loss(s, t).item() == pytest.approx(1.0)
    a, b = _tokens()
    assert torch.allclose(token_node_loss(a * 5, b), token_node_loss(a, b), atol=1e-6)
    assert token_node_loss(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_relation_loss_zero_on_same_geometry_and_allows_different_dims():
    a, _ = _tokens(d=6)
    rot = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(3)))[0]
    # a rotation keeps every cosine similarity: the relation graph is identical
    assert token_relation_loss(a @ rot, a).item() == pytest.approx(0.0, abs=1e-5)
    s = torch.randn(3, 5, 2)                                  # student width 2, teacher width 6
    assert token_relation_loss(s, a).item() > 0


def test_relation_loss_matches_by_hand_kl():
    s, t = _tokens(b=2, n=3, d=4, seed=4)
    tau = 0.5

    def rows(x):
        z = F.normalize(x.flatten(0, 1), dim=-1)
        sim = z @ z.T / tau
        sim.fill_diagonal_(-1e4)
        return F.log_softmax(sim, -1)

    lt, ls = rows(t), rows(s)
    want = F.kl_div(ls, lt, reduction="batchmean", log_target=True)
    assert torch.allclose(token_relation_loss(s, t, tau=tau), want, atol=1e-6)


def test_contextual_loss_prefers_matching_context_not_positions():
    _, t = _tokens(b=2, n=6, d=8, seed=5)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    same = contextual_loss(t.clone(), t)
    shuffled = contextual_loss(t[:, perm], t)                 # same tokens, other positions
    other = contextual_loss(torch.randn(2, 6, 8), t)
    assert same.item() == pytest.approx(shuffled.item(), abs=1e-5)
    assert other.item() > same.item() >= 0


def test_trg_gradients_reach_student_only():
    s, t = _tokens()
    s.requires_grad_(True)
    t.requires_grad_(True)
    (token_node_loss(s, t) + token_relation_loss(s, t) + contextual_loss(s, t)).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None


@pytest.mark.parametrize("fn", [token_node_loss, contextual_loss])
def test_node_and_context_need_same_shape(fn):
    with pytest.raises(ValueError, match="same shape"):
        fn(torch.randn(2, 5, 4), torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="batch, tokens, dim"):
        fn(torch.randn(2, 5), torch.randn(2, 5))
    with pytest.raises(ValueError, match="NaN"):
        fn(torch.full((2, 5, 4), float("nan")), torch.randn(2, 5, 4))


def test_relation_bad_input():
    with pytest.raises(ValueError, match="number of tokens"):
        token_relation_loss(torch.randn(2, 5, 4), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="temperature"):
        token_relation_loss(torch.randn(2, 5, 4), torch.randn(2, 5, 4), tau=0.0)
    with pytest.raises(ValueError, match="temperature"):
        contextual_loss(torch.randn(2, 5, 4), torch.randn(2, 5, 4), h=-1.0)


# --- DMAE / MAE ------------------------------------------------------------------------------

def test_visible_feature_loss_value_matches_the_official_form():
    g = torch.Generator().manual_seed(6)
    t = torch.randn(2, 4, 8, generator=g)
    assert visible_feature_loss(3.0 * t, t).item() == pytest.approx(0.0, abs=1e-6)     # scale-free
    s = torch.randn(2, 4, 8, generator=g)
    # DMAE's code: nn.L1Loss()(F.normalize(teacher, dim=-1), F.normalize(head(student), dim=-1))
    want = torch.nn.L1Loss()(F.normalize(t, dim=-1), F.normalize(s, dim=-1))
    assert torch.allclose(visible_feature_loss(s, t), want, atol=1e-7)
    e = torch.eye(8)[:2][None]                                          # two orthogonal unit vectors
    assert visible_feature_loss(e, e.flip(1)).item() == pytest.approx(4 / 16)


def test_visible_feature_loss_gradient_and_bad_input():
    t = torch.randn(2, 4, 8)
    s = torch.randn(2, 4, 8, requires_grad=True)
    visible_feature_loss(s, t).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    with pytest.raises(ValueError, match="same shape"):
        visible_feature_loss(torch.randn(2, 4, 5), t)
    with pytest.raises(ValueError, match="batch, visible patches, dim"):
        visible_feature_loss(torch.randn(4, 8), torch.randn(4, 8))


def test_gather_and_mask_patches_keep_only_the_visible_ones():
    x = torch.randn(2, 1, 28, 28)
    keep = torch.tensor([[5, 0, 9], [15, 3, 4]])
    p = patchify(x, 7)                                                  # (2, 16, 49)
    assert torch.equal(gather_patches(p, keep), torch.stack([p[0, [5, 0, 9]], p[1, [15, 3, 4]]]))
    xm = patchify(mask_patches(x, keep, 7), 7)
    visible = torch.zeros(2, 16, dtype=torch.bool).scatter(1, keep, True)
    assert torch.equal(xm[visible], p[visible]) and (xm[~visible] == 0).all()
    with pytest.raises(ValueError, match="indexes patches"):
        gather_patches(p, torch.tensor([[0, 16, 1], [0, 1, 2]]))
    with pytest.raises(ValueError, match="distinct"):
        mask_patches(x, torch.tensor([[0, 0, 1], [0, 1, 2]]), 7)


def _change_masked_patch(x, keep):
    """x with one hidden patch of image 0 changed: the first one next to a visible patch."""
    visible = keep[0].tolist()
    hidden = next(i for i in range(16) if i not in visible and any(
        abs(i // 4 - v // 4) + abs(i % 4 - v % 4) == 1 for v in visible))
    r, c = divmod(hidden, 4)
    x2 = x.clone()
    x2[0, 0, 7 * r:7 * r + 7, 7 * c:7 * c + 7] += 5.0
    return x2


def test_dmae_teachers_see_no_hidden_patch():
    """The leak the official code avoids: a teacher target must not move when a hidden patch changes."""
    torch.manual_seed(0)
    x, keep = torch.randn(2, 1, 28, 28), random_keep(2, 16, 0.75)
    x2 = _change_masked_patch(x, keep)
    cnn = CNNTokens(SmallCNN(width=8).eval(), grid=4, stages=2)
    full = [gather_patches(cnn(a), keep) for a in (x, x2)]                           # the old, leaky target
    assert not torch.allclose(full[0], full[1], atol=1e-4)
    masked = [gather_patches(cnn(mask_patches(a, keep, 7)), keep) for a in (x, x2)]
    assert torch.allclose(masked[0], masked[1], atol=1e-6)
    vit = tiny_vit().eval()
    outs = [visible_block_outputs(vit, a, keep, depth=2) for a in (x, x2)]
    assert len(outs[0]) == 2 and outs[0][-1].shape == (2, 1 + keep.shape[1], 64)
    assert torch.allclose(outs[0][-1], outs[1][-1], atol=1e-6)
    with pytest.raises(ValueError, match="depth"):
        visible_block_outputs(vit, x, keep, depth=5)


def test_random_keep_counts_and_bad_ratio():
    keep = random_keep(5, 16, 0.75)
    assert keep.shape == (5, 4) and all(len(set(r.tolist())) == 4 for r in keep)
    assert random_keep(3, 16, 0.95).shape == (3, 1)                    # at least one visible patch
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="mask_ratio"):
            random_keep(2, 16, bad)


def test_reconstruction_loss_on_masked_patches_only():
    x = torch.randn(2, 1, 28, 28)
    patches = patchify(x, 7)                                            # (2, 16, 49)
    keep = random_keep(2, 16, 0.75)
    target = F.layer_norm(patches, (49,))
    pred = target.clone()
    visible = torch.zeros(2, 16, dtype=torch.bool).scatter(1, keep, True)
    pred[visible] += 10.0                                               # errors on visible patches are ignored
    assert masked_reconstruction_loss(pred, patches, keep).item() == pytest.approx(0.0, abs=1e-6)
    pred[~visible] += 1.0
    assert masked_reconstruction_loss(pred, patches, keep).item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="nothing to reconstruct"):
        masked_reconstruction_loss(pred, patches, torch.arange(16).repeat(2, 1))


def test_patchify_order_matches_vit_patch_embedding():
    x = torch.arange(28 * 28, dtype=torch.float32).reshape(1, 1, 28, 28)
    p = patchify(x, 7)
    assert p.shape == (1, 16, 49)
    assert torch.equal(p[0, 1], x[0, 0, :7, 7:14].flatten())           # row-major: patch 1 is right of patch 0
    assert torch.equal(p[0, 4], x[0, 0, 7:14, :7].flatten())


def test_mae_visible_tokens_only_and_gradients():
    torch.manual_seed(0)
    mae = MaskedAutoencoder(tiny_vit(), feature_dim=8, feature_block=2)
    x = torch.randn(3, 1, 28, 28)
    keep = random_keep(3, 16, 0.75)
    pred, feats = mae(x, keep)
    assert pred.shape == (3, 16, 49) and feats.shape == (3, 4, 8)
    # changing a masked patch cannot change what the encoder saw
    assert torch.allclose(mae(_change_masked_patch(x, keep), keep)[1][0], feats[0], atol=1e-5)
    # the features are the visible tokens after block 2, through the head
    assert torch.allclose(feats, mae.feature_head(visible_block_outputs(mae.vit, x, keep)[2][:, 1:]), atol=1e-6)
    loss = masked_reconstruction_loss(pred, patchify(x, 7), keep) + feats.abs().mean()
    loss.backward()
    assert mae.vit.patch_embed.proj.weight.grad.abs().sum() > 0


# --- students and helpers ----------------------------------------------------------------------

def test_block_outputs_and_branches_match_the_model():
    x = torch.randn(2, 1, 28, 28)
    for model in (tiny_vit().eval(), tiny_mixer().eval()):
        tokens, out = block_outputs(model, x)
        assert len(tokens) == 4 and torch.allclose(out, model(x), atol=1e-6)
        final, branches = StageBranches(model, [0, 2])(x)
        assert final.shape == (2, 10) and [b.shape for b in branches] == [(2, 10), (2, 10)]


def test_cls_dist_logits_average_is_the_eval_output():
    model = tiny_vit(distilled=True).eval()
    x = torch.randn(3, 1, 28, 28)
    z_cls, z_dist = cls_dist_logits(model, x)
    assert torch.allclose((z_cls + z_dist) / 2, model(x), atol=1e-6)


def test_cnn_tokens_pools_to_the_patch_grid():
    fmap = torch.arange(49, dtype=torch.float32).reshape(1, 1, 7, 7)
    tok = cnn_tokens(fmap, 4)                                           # (1, 16, 1)
    assert tok.shape == (1, 16, 1)
    assert tok[0, 0, 0].item() == pytest.approx(fmap[0, 0, :2, :2].mean().item())     # cells 0-1
    assert tok[0, 5, 0].item() == pytest.approx(fmap[0, 0, 1:4, 1:4].mean().item())   # cells 1-3


def test_long_tailed_counts_and_indices():
    counts = long_tailed_counts(1000, 100)
    assert counts == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    y = torch.arange(10).repeat_interleave(1200)
    idx = long_tailed_indices(y, counts, seed=0)
    assert torch.bincount(y[idx], minlength=10).tolist() == counts
    assert torch.equal(idx, long_tailed_indices(y, counts, seed=0))
    with pytest.raises(ValueError, match="requested"):
        long_tailed_indices(y, [2000] + counts[1:])
    with pytest.raises(ValueError, match="imbalance"):
        long_tailed_counts(100, 0.5)


def test_class_balanced_weights():
    w = class_balanced_weights([1000, 10], beta=0.999)
    assert w.mean().item() == pytest.approx(1.0)
    ratio = (1 - 0.999**1000) / (1 - 0.999**10)
    assert (w[1] / w[0]).item() == pytest.approx(ratio, rel=1e-5)
    assert torch.allclose(class_balanced_weights([5, 50, 500], beta=0.0), torch.ones(3))
    for bad in ({"beta": 1.0}, {"beta": -0.1}):
        with pytest.raises(ValueError, match="beta"):
            class_balanced_weights([5, 5], **bad)
    with pytest.raises(ValueError, match="positive"):
        class_balanced_weights([5, 0])
    assert math.isfinite(class_balanced_weights([1, 10**6], beta=0.9999).sum().item())
