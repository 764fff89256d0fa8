"""Notebook 01c's package code: ACM (P08) module, losses and cost count; Hybrid Distill (P14) pieces."""

import math

import pytest
import torch
import torch.nn.functional as F

import cookbook  # noqa: F401  (registers the torchvision op schemas before timm)
from cookbook.losses import (
    acm_distill_loss,
    acm_gate_losses,
    acm_gate_targets,
    attention_kl_loss,
    gate_choice_loss,
    hybrid_distill_loss,
    restrict_attention,
)
from cookbook.methods.vision import progressive_ratio, redundant_token_keep
from cookbook.models import (
    AdaptiveComputationModule,
    acmize,
    block_with_attention,
    set_acm_mode,
    small_vit,
    vit_forward_tokens,
    vit_macs,
)


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return small_vit(embed_dim=32, num_heads=4, mlp_ratio=4.0).eval()


def test_acm_prefix_sums_and_detached_gradients():
    torch.manual_seed(0)
    acm = AdaptiveComputationModule(dim=8, block_dim=4, num_learners=3)
    x = torch.randn(5, 8)
    outs = acm.all_outputs(x)                                                # (5, 4, 8)
    h = F.gelu(x @ acm.w1 + acm.b1).view(5, 3, 4)
    parts = torch.stack([h[:, i] @ acm.w2[i] for i in range(3)], 1)
    assert torch.allclose(outs[:, 0], torch.zeros(5, 8))
    assert torch.allclose(outs[:, 1:], parts.cumsum(1), atol=1e-6)
    # with the prefix detached, the loss on o_2 reaches learner 2 only (learner 1's slice gets no gradient)
    outs[:, 2].pow(2).sum().backward()
    assert acm.w2.grad[0].abs().sum() == 0 and acm.w2.grad[1].abs().sum() > 0 and acm.w2.grad[2].abs().sum() == 0


def test_acm_modes_and_gate_shapes():
    torch.manual_seed(0)
    acm = AdaptiveComputationModule(dim=8, block_dim=4, num_learners=3)
    x = torch.randn(2, 6, 8)
    with pytest.raises(RuntimeError, match="all_outputs"):
        acm(x)
    acm.mode = 2
    assert torch.allclose(acm(x), acm.all_outputs(x)[..., 2, :])
    acm.mode = "gated"
    acm.eval()
    out = acm(x)
    k = acm.gate(x).argmax(-1)
    assert torch.allclose(out, acm.all_outputs(x).gather(-2, k[..., None, None].expand(-1, -1, 1, 8))[..., 0, :])
    acm.train()
    acm(x).sum().backward()                                                  # straight-through: the gate gets a gradient
    assert acm.gate[0].weight.grad is not None and acm.gate[0].weight.grad.abs().sum() > 0
    assert acm.last_gate.shape == (2, 6, 4) and torch.equal(acm.last_gate.sum(-1), torch.ones(2, 6))


def test_acmize_copies_the_rest_and_one_learner_can_be_the_mlp(vit):
    model, acms = acmize(vit, num_learners=1)
    assert len(acms) == len(vit.blocks) and torch.equal(model.patch_embed.proj.weight, vit.patch_embed.proj.weight)
    for block, orig in zip(model.blocks, vit.blocks):                        # learner 1 := the MLP without fc2's bias
        block.mlp.w1.data = orig.mlp.fc1.weight.T.clone()
        block.mlp.b1.data = orig.mlp.fc1.bias.clone()
        block.mlp.w2.data = orig.mlp.fc2.weight.T.clone()[None]
        orig.mlp.fc2.bias.data.zero_()
    set_acm_mode(acms, 1)
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(model(x), vit(x), atol=1e-5)
    with pytest.raises(ValueError, match="mode"):
        set_acm_mode(acms, 7)
    with pytest.raises(ValueError, match="divisible"):
        acmize(vit, num_learners=5)


def test_vit_macs_counts_the_dense_model_and_scales_with_learners(vit):
    d, T, n = 32, 17, 16
    dense = n * 49 * d + d * 10 + 4 * (T * 4 * d * d + 2 * T * T * d + T * 2 * d * 128)
    assert vit_macs(vit) == dense
    model, _ = acmize(vit, num_learners=4)
    assert vit_macs(model) == dense                                          # all learners, no gate
    gate = 32 * 16 + 16 * 16 + 16 * 5
    assert vit_macs(model, 2.0) == pytest.approx(dense - 4 * T * 2 * 2 * d * 32 + 4 * T * gate)
    assert vit_macs(model, torch.tensor([0.0, 1.0, 2.0, 3.0])) < vit_macs(model, 2.0) + 1


def test_acm_distill_loss_value_and_bad_input():
    prefix = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]]])            # (1, N + 1 = 3, 2)
    target = torch.tensor([[1.0, 1.0]])
    want = ((0 - 1) ** 2 + 1 + 0 + 1 + 0 + 1) / 6
    assert acm_distill_loss(prefix, target).item() == pytest.approx(want)
    with pytest.raises(ValueError, match="does not match"):
        acm_distill_loss(prefix, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="NaN"):
        acm_distill_loss(prefix, torch.tensor([[float("nan"), 1.0]]))


def test_acm_gate_targets_follow_the_improvement_rule():
    target = torch.zeros(3, 1)
    # errors per token over k = 0..3: [8, 4, 3.9, 1] -> 8/4 = 2 >= 1.2, 4/3.9 < 1.2 -> stop at j = 1 -> label 2
    #                                  [8, 2, 1, 0.5] -> every step improves >= 1.2 -> label N = 3
    #                                  [8, 7.9, 1, 1] -> first step < 1.2 -> label 1
    errs = torch.tensor([[8, 4, 3.9, 1], [8, 2, 1, 0.5], [8, 7.9, 1, 1.0]])
    assert acm_gate_targets(errs[..., None], target).tolist() == [2, 3, 1]
    with pytest.raises(ValueError, match="factor"):
        acm_gate_targets(errs[..., None], target, factor=1.0)
    logits = torch.randn(3, 4, requires_grad=True)
    gate_choice_loss(logits, torch.tensor([2, 3, 1])).backward()
    assert logits.grad.abs().sum() > 0


def test_acm_gate_losses_budget_entropy_diversity():
    n = 4
    k = torch.tensor([[0, 4], [2, 2]])                                       # (B=2, T=2) choices in one ACM
    g = F.one_hot(k, n + 1).float()
    out = acm_gate_losses([g], target_budget=0.5)
    assert out["budget"].item() == pytest.approx(0.0)                        # mean k / N = 8 / 16
    assert out["entropy"].item() == pytest.approx(-(math.log(2) / math.log(5)) / 2)
    assert out["diversity"].item() == pytest.approx(0.0)                     # both images cost 0.5
    same = acm_gate_losses([F.one_hot(torch.tensor([[0, 0], [4, 4]]), n + 1).float()], target_budget=0.0)
    assert same["budget"].item() == pytest.approx(0.5) and same["diversity"].item() == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="target_budget"):
        acm_gate_losses([g], target_budget=1.5)


def test_block_with_attention_is_the_block(vit):
    x = torch.randn(2, 17, 32)
    out, attn = block_with_attention(vit.blocks[0], x)
    assert torch.allclose(out, vit.blocks[0](x), atol=1e-5)
    assert attn.shape == (2, 4, 17, 17) and torch.allclose(attn.sum(-1), torch.ones(2, 4, 17))


def test_vit_forward_tokens_matches_the_model_and_masks(vit):
    x = torch.randn(2, 1, 28, 28)
    tokens, attns = vit_forward_tokens(vit, x)
    assert torch.allclose(vit.forward_head(tokens), vit(x), atol=1e-5)
    keep = torch.tensor([[0, 3, 5], [1, 2, 15]])
    t2, a2 = vit_forward_tokens(vit, x, keep)
    assert t2.shape == (2, 4, 32) and a2[-1].shape == (2, 4, 4, 4)


def test_restrict_attention_renormalises_kept_rows():
    attn = torch.softmax(torch.randn(2, 3, 5, 5), -1)                        # CLS + 4 patches
    keep = torch.tensor([[0, 2], [1, 3]])
    sub = restrict_attention(attn, keep)
    assert sub.shape == (2, 3, 3, 3) and torch.allclose(sub.sum(-1), torch.ones(2, 3, 3))
    idx = [0, 1, 3]                                                          # CLS, patches 0 and 2 of image 0
    manual = attn[0][:, idx][:, :, idx]
    assert torch.allclose(sub[0], manual / manual.sum(-1, keepdim=True))
    assert torch.allclose(restrict_attention(attn, torch.arange(4).expand(2, 4)), attn)
    with pytest.raises(ValueError, match="distinct"):
        restrict_attention(attn, torch.tensor([[1, 1], [0, 2]]))


def test_attention_kl_and_hybrid_loss():
    t = torch.softmax(torch.randn(2, 4, 5, 5), -1)
    s_logits = torch.randn(2, 4, 5, 5, requires_grad=True)
    assert attention_kl_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    loss = attention_kl_loss(torch.softmax(s_logits, -1), t)
    loss.backward()
    assert loss.item() > 0 and s_logits.grad.abs().sum() > 0
    st, tt = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    feat = (st - F.layer_norm(tt, (8,))).pow(2).mean()
    assert hybrid_distill_loss(st, tt, [], [], beta=0.0).item() == pytest.approx(feat.item())
    both = hybrid_distill_loss(st, tt, [torch.softmax(s_logits, -1)], [t], alpha=2.0, beta=3.0)
    assert both.item() == pytest.approx(2 * feat.item() + 3 * loss.item(), rel=1e-5)
    with pytest.raises(ValueError, match="MIM"):
        hybrid_distill_loss(st, tt, [t], [], beta=1.0)
    with pytest.raises(ValueError, match="alpha"):
        hybrid_distill_loss(st, tt, [], [], alpha=-1.0)


def test_redundant_token_keep_and_progressive_ratio():
    att = torch.tensor([[0.1, 0.5, 0.05, 0.35], [0.4, 0.3, 0.2, 0.1]])
    assert redundant_token_keep(att, 0.5).tolist() == [[1, 3], [0, 1]]
    assert redundant_token_keep(att, 0.0).tolist() == [[0, 1, 2, 3]] * 2
    assert redundant_token_keep(att, 0.9).shape == (2, 1)
    assert [progressive_ratio(p, 0.5) for p in (0.0, 0.4, 0.7, 1.0)] == [0.0, 0.25, 0.5, 0.5]
    with pytest.raises(ValueError, match="mask_ratio"):
        redundant_token_keep(att, 1.0)


def test_attention_distance_local_vs_global():
    from cookbook.metrics import attention_distance

    n = 4
    local = torch.eye(1 + n)[None, None]                                      # every token attends to itself
    assert attention_distance(local, grid=2).item() == 0.0
    uniform = torch.full((1, 1, 1 + n, 1 + n), 1 / (1 + n))
    want = (2 * 1 + 1 * 2 ** 0.5) / 4                                         # from a 2 x 2 corner: 1, 1, sqrt 2, 0
    assert attention_distance(uniform, grid=2).item() == pytest.approx(want)
    with pytest.raises(ValueError, match="attn"):
        attention_distance(uniform, grid=3)
