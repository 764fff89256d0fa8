"""The validation policy of cookbook.checks: its helpers, and a table of bad inputs across the losses.

Every public loss raises a clear TypeError / ValueError naming the argument, never a torch internal
(IndexError, RuntimeError, AttributeError, KeyError, ZeroDivisionError).
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import cookbook.losses as LS
import cookbook.losses.graph as G
import cookbook.losses.llm as L
import cookbook.losses.selection as S
from cookbook import checks
from cookbook.config import ROOT
from cookbook.kernels import TeacherHead, auto_chunk_size, fused_linear_distill
from cookbook.losses.attention import attention_relation_loss, attention_relations
from cookbook.models.vision import random_keep

NAN, INF = float("nan"), float("inf")
B, C = 4, 10


def logits(b=B, c=C, seed=0):
    return torch.randn(b, c, generator=torch.Generator().manual_seed(seed))


def labels(*values):
    return torch.tensor(values or [0, 1, 2, 3])


def edges():
    return torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])


def tokens(b=2, n=6, d=4, seed=0):
    return torch.randn(b, n, d, generator=torch.Generator().manual_seed(seed))


def keep(rows=((0, 2), (1, 3))):
    return torch.tensor(rows)


def disc():
    return nn.Linear(C, 2)


def qkv(b=2, length=5, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, length, d, generator=g) for _ in range(3))


def fused(**kw):
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(6, 8, generator=g), torch.randn(11, 8, generator=g)
    args = dict(student_hidden=h, student_head=w, teacher=torch.randn(6, 11, generator=g))
    args.update(kw)
    return fused_linear_distill(args.pop("student_hidden"), args.pop("student_head"), args.pop("teacher"), **args)


def with_nan(x):
    x = x.clone()
    x.view(-1)[0] = NAN
    return x


def with_inf(x):
    x = x.clone()
    x.view(-1)[0] = INF
    return x


# (name, call, expected exception, message fragment)
CASES = [
    # --- labels: out of range, float, wrong shape, numpy
    ("kd labels 10", lambda: LS.kd_loss(logits(), logits(seed=1), labels=labels(0, 1, 2, 10), alpha=0.5), ValueError, r"labels must lie in \[0, 10\)"),
    ("kd labels -1", lambda: LS.kd_loss(logits(), logits(seed=1), labels=labels(0, 1, 2, -1), alpha=0.5), ValueError, "ignore_index=-100"),
    ("kd labels float", lambda: LS.kd_loss(logits(), logits(seed=1), labels=labels().float(), alpha=0.5), ValueError, "int64"),
    ("kd labels numpy", lambda: LS.kd_loss(logits(), logits(seed=1), labels=np.arange(4), alpha=0.5), TypeError, "labels must be a torch.Tensor"),
    ("kd labels shape", lambda: LS.kd_loss(logits(), logits(seed=1), labels=labels(0, 1), alpha=0.5), ValueError, "labels must have shape"),
    ("kd ignore_index other", lambda: LS.kd_loss(logits(), logits(seed=1), labels=labels(0, 1, 2, -100), alpha=0.5, ignore_index=-1), ValueError, "-100"),
    ("dkd labels 10", lambda: LS.dkd_loss(logits(), logits(seed=1), labels(0, 1, 2, 10)), ValueError, "labels must lie"),
    ("dkd labels -100", lambda: LS.dkd_loss(logits(), logits(seed=1), labels(0, 1, 2, -100)), ValueError, "labels must lie"),
    ("dkd labels float", lambda: LS.dkd_loss(logits(), logits(seed=1), labels().float()), ValueError, "int64"),
    ("dkd labels list", lambda: LS.dkd_loss(logits(), logits(seed=1), [0, 1, 2, 3]), TypeError, "labels must be a torch.Tensor"),
    ("pld labels 10", lambda: LS.pld_loss(logits(), logits(seed=1), labels(0, 1, 2, 10)), ValueError, "labels must lie"),
    ("pld labels int32", lambda: LS.pld_loss(logits(), logits(seed=1), labels().int()), ValueError, "int64"),
    ("ofa labels 10", lambda: LS.ofa_loss(logits(), logits(seed=1), labels(0, 1, 2, 10)), ValueError, "labels must lie"),
    ("ofa labels float", lambda: LS.ofa_loss(logits(), logits(seed=1), labels().float()), ValueError, "int64"),
    ("ofa labels -1", lambda: LS.ofa_loss(logits(), logits(seed=1), labels(0, 1, 2, -1)), ValueError, "labels must lie"),
    ("dho labels 10", lambda: LS.dho_loss(logits(), labels(0, 1, 2, 10), logits(), logits(seed=1)), ValueError, "labels must lie"),
    ("dho labels float", lambda: LS.dho_loss(logits(), labels().float(), logits(), logits(seed=1)), ValueError, "int64"),
    ("ffg2m labels 10", lambda: G.ffg2m_loss(logits(), logits(seed=1), edges(), labels(0, 1, 2, 10)), ValueError, "labels must lie"),
    ("ffg2m labels float", lambda: G.ffg2m_loss(logits(), logits(seed=1), edges(), labels().float()), ValueError, "int64"),
    ("ffg2m labels numpy", lambda: G.ffg2m_loss(logits(), logits(seed=1), edges(), np.arange(4)), TypeError, "torch.as_tensor"),
    ("llm labels V", lambda: L.forward_kl(logits(6, 11), logits(6, 11, 1), labels=torch.full((6,), 11)), ValueError, r"\[0, V=11\)"),
    ("llm labels float", lambda: L.reverse_kl(logits(6, 11), logits(6, 11, 1), labels=torch.zeros(6)), ValueError, "integer|int64"),
    ("llm labels numpy", lambda: L.forward_kl(logits(6, 11), logits(6, 11, 1), labels=np.zeros(6, dtype=np.int64)), TypeError, "labels"),
    ("llm mask list", lambda: L.forward_kl(logits(6, 11), logits(6, 11, 1), mask=[True] * 6), TypeError, "mask"),
    ("sinkhorn labels V", lambda: L.sinkhorn_loss(logits(6, 11), logits(6, 11, 1), labels=torch.full((6,), 20)), ValueError, "V=11"),
    ("fused labels V", lambda: fused(labels=torch.full((6,), 11)), ValueError, "V=11"),
    # --- tensors passed as numpy / lists
    ("kd numpy", lambda: LS.kd_loss(logits().numpy(), logits(seed=1)), TypeError, "student_logits must be a torch.Tensor"),
    ("kd list teacher", lambda: LS.kd_loss(logits(), logits(seed=1).tolist()), TypeError, "teacher_logits"),
    ("LS.soft_targets numpy", lambda: LS.soft_targets(logits().numpy()), TypeError, "logits"),
    ("dkd numpy", lambda: LS.dkd_loss(logits().numpy(), logits(seed=1), labels()), TypeError, "torch.Tensor"),
    ("pld numpy", lambda: LS.pld_loss(logits(), logits(seed=1).numpy(), labels()), TypeError, "teacher_logits"),
    ("ofa numpy", lambda: LS.ofa_loss(logits().numpy(), logits(seed=1), labels()), TypeError, "torch.Tensor"),
    ("hard numpy", lambda: LS.hard_distillation_loss(logits().numpy(), logits(seed=1)), TypeError, "torch.Tensor"),
    ("dual_head numpy", lambda: LS.dual_head_probs(logits().numpy(), logits(seed=1), alpha=0.5), TypeError, "torch.Tensor"),
    ("ensemble numpy", lambda: LS.ensemble_soft_targets([logits().numpy()]), TypeError, "torch.Tensor"),
    ("ensemble tensor", lambda: LS.ensemble_soft_targets(logits()), TypeError, "list or tuple"),
    ("meal numpy", lambda: LS.meal_v2_loss(logits().numpy(), LS.soft_targets(logits(seed=1)), disc(), target_logits=logits(seed=1)), TypeError, "torch.Tensor"),
    ("meal discriminator", lambda: LS.meal_v2_loss(logits(), LS.soft_targets(logits(seed=1)), "disc", target_logits=logits(seed=1)), TypeError, "nn.Module"),
    ("lfd numpy", lambda: G.low_frequency_loss(logits().numpy(), logits(seed=1), edges()), TypeError, "torch.Tensor"),
    ("hfd edges list", lambda: G.high_frequency_loss(logits(), logits(seed=1), edges().tolist()), TypeError, "edge_index"),
    ("vq numpy", lambda: G.soft_code_assignments(torch.randn(4, 3).numpy(), torch.randn(5, 3)), TypeError, "embeddings"),
    ("vq codebook list", lambda: G.soft_code_assignments(torch.randn(4, 3), [[0.0] * 3] * 5), TypeError, "codebook"),
    ("vq teacher numpy", lambda: G.soft_code_loss(torch.randn(4, 3), np.ones((4, 5)) / 5, torch.randn(5, 3)), TypeError, "teacher_assignments"),
    ("node numpy", lambda: LS.token_node_loss(tokens().numpy(), tokens(seed=1)), TypeError, "student_tokens"),
    ("relation numpy", lambda: LS.token_relation_loss(tokens(), tokens(seed=1).numpy()), TypeError, "teacher_tokens"),
    ("contextual numpy", lambda: LS.contextual_loss(tokens().numpy(), tokens(seed=1)), TypeError, "torch.Tensor"),
    ("visible keep list", lambda: LS.visible_feature_loss(tokens(n=2), tokens(seed=1), [[0, 2], [1, 3]]), TypeError, "keep"),
    ("mae keep numpy", lambda: LS.masked_reconstruction_loss(tokens(), tokens(seed=1), keep().numpy()), TypeError, "keep"),
    ("llm numpy", lambda: L.forward_kl(logits(6, 11).numpy(), logits(6, 11, 1)), TypeError, "student_logits"),
    ("llm teacher list", lambda: L.generalized_jsd(logits(6, 11), logits(6, 11, 1).tolist()), TypeError, "teacher_logits"),
    ("taid_target numpy", lambda: L.taid_target(logits(6, 11).numpy(), logits(6, 11, 1), t=0.5), TypeError, "student_logits"),
    ("topk numpy", lambda: L.forward_kl(logits(6, 11), L.TopKTeacher(np.zeros((6, 2)), torch.zeros(6, 2))), TypeError, "top-k indices"),
    ("sinkhorn numpy", lambda: L.sinkhorn_loss(logits(6, 11), logits(6, 11, 1).numpy()), TypeError, "teacher_logits"),
    ("dac_kl numpy", lambda: L.dac_kl_loss(logits(6, 11).numpy(), logits(6, 11, 1)), TypeError, "student_logits"),
    ("dac_kl lower list", lambda: L.dac_kl_loss(logits(6, 11), logits(6, 11, 1), lower=[0.5] * 6), TypeError, "lower"),
    ("attention numpy", lambda: attention_relation_loss(tuple(x.numpy() for x in qkv()), qkv(seed=1), 4), TypeError, "student projection"),
    ("attention mask list", lambda: attention_relations(qkv()[0], 4, mask=[[True] * 5] * 2), TypeError, "mask"),
    ("adaspec numpy", lambda: S.adaspec_select(np.ones(5), torch.ones(5), 0.5), TypeError, "student_loss"),
    ("sstoken numpy", lambda: S.sstoken_scores(torch.ones(2, 5).numpy(), torch.ones(2, 5), gamma=1.0), TypeError, "current_loss"),
    ("select mask list", lambda: S.top_fraction(torch.ones(5), 0.5, mask=[True] * 5), TypeError, "mask"),
    ("ddk numpy", lambda: S.ddk_domain_weights(np.ones(3), torch.ones(3)), TypeError, "student_domain_loss"),
    ("prompt attention numpy", lambda: S.prompt_attention_scores(np.ones((2, 4, 4)), torch.ones(2, 4, dtype=torch.bool)), TypeError, "attention"),
    ("fused numpy", lambda: fused(student_hidden=np.ones((6, 8))), TypeError, "student_hidden"),
    ("fused teacher head list", lambda: fused(teacher=TeacherHead([[0.0]], torch.randn(11, 8))), TypeError, "teacher hidden"),
    # --- names and sizes
    ("check_divergence name", lambda: L.check_divergence("kl", 0.5, None), ValueError, "forward_kl"),
    ("distill divergence name", lambda: L.distill_loss(logits(6, 11), logits(6, 11, 1), divergence="kl"), ValueError, "unknown divergence"),
    ("fused divergence name", lambda: fused(divergence="fkl"), ValueError, "choose one of"),
    ("auto_chunk divergence", lambda: auto_chunk_size(100, 50, 8, divergence="kl"), ValueError, "reverse_kl"),
    ("auto_chunk vocab 0", lambda: auto_chunk_size(100, 0, 8), ValueError, "vocab must be >= 1"),
    ("auto_chunk rows 0", lambda: auto_chunk_size(0, 50, 8), ValueError, "n_rows"),
    ("auto_chunk dim 0", lambda: auto_chunk_size(100, 50, 0), ValueError, "student_dim"),
    ("auto_chunk budget nan", lambda: auto_chunk_size(100, 50, 8, budget=NAN), ValueError, "budget"),
    ("auto_chunk vocab float", lambda: auto_chunk_size(100, 50.0, 8), TypeError, "vocab must be an int"),
    ("fused chunk bool", lambda: fused(chunk_size=True), ValueError, "chunk_size"),
    # --- keep index tensors
    ("visible keep range", lambda: LS.visible_feature_loss(tokens(n=2), tokens(seed=1), keep(((0, 6), (1, 3)))), ValueError, "indexes patches"),
    ("visible keep negative", lambda: LS.visible_feature_loss(tokens(n=2), tokens(seed=1), keep(((0, -1), (1, 3)))), ValueError, "indexes patches"),
    ("visible keep repeated", lambda: LS.visible_feature_loss(tokens(n=2), tokens(seed=1), keep(((0, 0), (1, 3)))), ValueError, "distinct"),
    ("visible keep int32", lambda: LS.visible_feature_loss(tokens(n=2), tokens(seed=1), keep().int()), ValueError, "int64"),
    ("visible teacher batch", lambda: LS.visible_feature_loss(tokens(n=2), tokens(b=3, seed=1), keep()), ValueError, "keep must have shape"),
    ("mae keep broadcast", lambda: LS.masked_reconstruction_loss(tokens(), tokens(seed=1), keep(((0, 2),))), ValueError, r"keep must have shape \(2, 2\)"),
    ("mae keep range", lambda: LS.masked_reconstruction_loss(tokens(), tokens(seed=1), keep(((0, 6), (1, 2)))), ValueError, "indexes patches"),
    ("mae keep repeated", lambda: LS.masked_reconstruction_loss(tokens(), tokens(seed=1), keep(((1, 1), (1, 2)))), ValueError, "distinct"),
    ("mae keep float", lambda: LS.masked_reconstruction_loss(tokens(), tokens(seed=1), keep().float()), ValueError, "int64"),
    ("mae keep 1-D", lambda: LS.masked_reconstruction_loss(tokens(), tokens(seed=1), torch.tensor([0, 1])), ValueError, "keep must have 2 dimensions"),
    ("random_keep batch", lambda: random_keep(-1, 16, 0.5), ValueError, "batch"),
    ("random_keep patches", lambda: random_keep(2, 0, 0.5), ValueError, "num_patches"),
    ("random_keep float", lambda: random_keep(2.0, 16, 0.5), TypeError, "batch must be an int"),
    ("random_keep ratio nan", lambda: random_keep(2, 16, NAN), ValueError, "mask_ratio"),
    # --- hyper-parameters: non-finite or out of range
    ("kd T inf", lambda: LS.kd_loss(logits(), logits(seed=1), T=INF), ValueError, "finite"),
    ("kd T nan", lambda: LS.kd_loss(logits(), logits(seed=1), T=NAN), ValueError, "finite"),
    ("kd alpha nan", lambda: LS.kd_loss(logits(), logits(seed=1), alpha=NAN), ValueError, "alpha must be a finite"),
    ("kd T str", lambda: LS.kd_loss(logits(), logits(seed=1), T="4"), TypeError, "real number"),
    ("dkd beta nan", lambda: LS.dkd_loss(logits(), logits(seed=1), labels(), beta=NAN), ValueError, "beta"),
    ("dkd alpha -1", lambda: LS.dkd_loss(logits(), logits(seed=1), labels(), alpha=-1.0), ValueError, "alpha must be >= 0"),
    ("dkd T inf", lambda: LS.dkd_loss(logits(), logits(seed=1), labels(), T=INF), ValueError, "finite"),
    ("pld T inf", lambda: LS.pld_loss(logits(), logits(seed=1), labels(), T=INF), ValueError, "finite"),
    ("ofa gamma inf", lambda: LS.ofa_loss(logits(), logits(seed=1), labels(), gamma=INF), ValueError, "gamma"),
    ("ofa gamma nan", lambda: LS.ofa_loss(logits(), logits(seed=1), labels(), gamma=NAN), ValueError, "gamma"),
    ("meal adv nan", lambda: LS.meal_v2_loss(logits(), LS.soft_targets(logits(seed=1)), disc(), target_logits=logits(seed=1), adv_weight=NAN), ValueError, "adv_weight"),
    ("meal adv inf", lambda: LS.meal_v2_loss(logits(), LS.soft_targets(logits(seed=1)), disc(), target_logits=logits(seed=1), adv_weight=INF), ValueError, "adv_weight"),
    ("dho lam nan", lambda: LS.dho_loss(logits(), labels(), logits(), logits(seed=1), lam=NAN), ValueError, "lam"),
    ("dho T inf", lambda: LS.dho_loss(logits(), labels(), logits(), logits(seed=1), T=INF), ValueError, "finite"),
    ("dual alpha nan", lambda: LS.dual_head_probs(logits(), logits(seed=1), alpha=NAN), ValueError, "alpha"),
    ("dual beta inf", lambda: LS.dual_head_probs(logits(), logits(seed=1), alpha=0.5, beta=INF), ValueError, "finite"),
    ("LS.soft_targets T inf", lambda: LS.soft_targets(logits(), T=INF), ValueError, "finite"),
    ("ensemble T nan", lambda: LS.ensemble_soft_targets([logits()], T=NAN), ValueError, "finite"),
    ("hard weights negative", lambda: LS.hard_distillation_loss(logits(), logits(seed=1), class_weights=-torch.ones(C)), ValueError, "class_weights must be >= 0"),
    ("hard weights zero", lambda: LS.hard_distillation_loss(logits(), logits(seed=1), class_weights=torch.zeros(C)), ValueError, "not all 0"),
    ("hard weights nan", lambda: LS.hard_distillation_loss(logits(), logits(seed=1), class_weights=with_nan(torch.ones(C))), ValueError, "class_weights contains NaN"),
    ("hard weights int", lambda: LS.hard_distillation_loss(logits(), logits(seed=1), class_weights=torch.ones(C, dtype=torch.long)), ValueError, "float"),
    ("hard weights numpy", lambda: LS.hard_distillation_loss(logits(), logits(seed=1), class_weights=np.ones(C)), TypeError, "class_weights"),
    ("hfd tau inf", lambda: G.high_frequency_loss(logits(), logits(seed=1), edges(), tau=INF), ValueError, "finite"),
    ("ffg2m lam nan", lambda: G.ffg2m_loss(logits(), logits(seed=1), edges(), labels(), lam=NAN), ValueError, "lam"),
    ("ffg2m tau nan", lambda: G.ffg2m_loss(logits(), logits(seed=1), edges(), labels(), tau=NAN), ValueError, "finite"),
    ("vq T inf", lambda: G.soft_code_assignments(torch.randn(4, 3), torch.randn(5, 3), T=INF), ValueError, "finite"),
    ("relation tau nan", lambda: LS.token_relation_loss(tokens(), tokens(seed=1), tau=NAN), ValueError, "finite"),
    ("contextual h inf", lambda: LS.contextual_loss(tokens(), tokens(seed=1), h=INF), ValueError, "finite"),
    ("contextual eps nan", lambda: LS.contextual_loss(tokens(), tokens(seed=1), eps=NAN), ValueError, "eps"),
    ("llm T inf", lambda: L.forward_kl(logits(6, 11), logits(6, 11, 1), T=INF), ValueError, "finite"),
    ("jsd beta nan", lambda: L.generalized_jsd(logits(6, 11), logits(6, 11, 1), beta=NAN), ValueError, "beta"),
    ("taid t nan", lambda: L.taid_loss(logits(6, 11), logits(6, 11, 1), t=NAN), ValueError, "t"),
    ("skew alpha nan", lambda: L.skew_kl(logits(6, 11), logits(6, 11, 1), alpha=NAN), ValueError, "alpha"),
    ("sinkhorn eps inf", lambda: L.sinkhorn_loss(logits(6, 11), logits(6, 11, 1), epsilon=INF), ValueError, "epsilon"),
    ("sinkhorn n_iter float", lambda: L.sinkhorn_loss(logits(6, 11), logits(6, 11, 1), n_iter=2.5), TypeError, "n_iter"),
    ("dac_kl lower inf", lambda: L.dac_kl_loss(logits(6, 11), logits(6, 11, 1), lower=-INF), ValueError, "lower"),
    ("taid schedule momentum", lambda: L.TAIDSchedule(10, momentum=NAN), ValueError, "momentum"),
    ("topk T inf", lambda: L.forward_kl(logits(6, 11), L.TopKTeacher.from_logits(logits(6, 11), 3)._replace(T=INF)), ValueError, "finite"),
    ("select ratio nan", lambda: S.top_fraction(torch.ones(5), NAN), ValueError, "keep_ratio"),
    ("fused T inf", lambda: fused(T=INF), ValueError, "finite"),
    ("fused beta nan", lambda: fused(divergence="jsd", beta=NAN), ValueError, "beta"),
    # --- non-finite tensor values (value checks on by default)
    ("kd student inf", lambda: LS.kd_loss(with_inf(logits()), logits(seed=1)), ValueError, "NaN or inf"),
    ("kd teacher -inf", lambda: LS.kd_loss(logits(), -with_inf(logits(seed=1))), ValueError, "teacher_logits contains"),
    ("dho ce nan", lambda: LS.dho_loss(with_nan(logits()), labels(), logits(), logits(seed=1)), ValueError, "ce_logits"),
    ("LS.soft_targets nan", lambda: LS.soft_targets(with_nan(logits())), ValueError, "NaN"),
    ("llm +inf", lambda: L.forward_kl(with_inf(logits(6, 11)), logits(6, 11, 1)), ValueError, r"\+inf"),
    ("llm teacher nan", lambda: L.reverse_kl(logits(6, 11), with_nan(logits(6, 11, 1))), ValueError, "teacher_logits"),
    ("taid_target nan", lambda: L.taid_target(logits(6, 11), with_nan(logits(6, 11, 1)), t=0.5), ValueError, "NaN"),
    ("node tokens inf", lambda: LS.token_node_loss(with_inf(tokens()), tokens(seed=1)), ValueError, "student_tokens"),
    ("relation tokens nan", lambda: LS.token_relation_loss(tokens(), with_nan(tokens(seed=1, d=3))), ValueError, "teacher_tokens"),
    ("vq teacher nan", lambda: G.soft_code_loss(torch.randn(4, 3), with_nan(torch.ones(4, 5) / 5), torch.randn(5, 3)), ValueError, "teacher_assignments"),
    ("attention inf", lambda: attention_relation_loss(tuple(with_inf(x) for x in qkv()), qkv(seed=1), 4), ValueError, "student projection"),
    ("fused hidden inf", lambda: fused(student_hidden=with_inf(torch.randn(6, 8))), ValueError, "student_hidden"),
    ("fused teacher +inf", lambda: fused(teacher=with_inf(torch.randn(6, 11))), ValueError, r"\+inf"),
    ("fused teacher hidden inf", lambda: fused(teacher=TeacherHead(with_inf(torch.randn(6, 5)), torch.randn(11, 5))), ValueError, "teacher hidden"),
]


@pytest.mark.parametrize("call, error, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_table_is_broad():
    assert len(CASES) >= 80


# ----------------------------------------------------------------------------- the helpers


def test_check_tensor():
    checks.check_tensor("x", torch.zeros(2))
    checks.check_tensor("x", None, optional=True)
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor, got ndarray.*torch.as_tensor\(x\)"):
        checks.check_tensor("x", np.zeros(2))
    with pytest.raises(TypeError, match="got list"):
        checks.check_tensor("x", [1.0])
    with pytest.raises(TypeError, match="NoneType"):
        checks.check_tensor("x", None)
    with pytest.raises(ValueError, match="x must have 2 dimensions"):
        checks.check_tensor("x", torch.zeros(2), ndim=2)


@pytest.mark.parametrize("kwargs, value, match", [
    ({}, NAN, "finite"), ({}, INF, "finite"), ({}, -INF, "finite"),
    ({"low": 0.0}, -1.0, "w must be >= 0"), ({"low": 0.0, "low_open": True}, 0.0, "w must be > 0"),
    ({"high": 1.0}, 2.0, "w must be <= 1"), ({"high": 1.0, "high_open": True}, 1.0, "w must be < 1"),
    ({"low": 0.0, "high": 1.0}, 1.5, r"w must be in \[0, 1\]"),
    ({"low": 0.0, "high": 1.0, "high_open": True}, 1.0, r"w must be in \[0, 1\)"),
])
def test_check_finite_param_rejects(kwargs, value, match):
    with pytest.raises(ValueError, match=match):
        checks.check_finite_param("w", value, **kwargs)


def test_check_finite_param_accepts_and_types():
    assert checks.check_finite_param("w", 1, 0.0, 1.0) == 1.0
    assert checks.check_finite_param("w", np.float32(0.5), 0.0, 1.0) == 0.5
    assert checks.check_finite_param("w", torch.tensor(0.25), 0.0, 1.0) == 0.25
    for bad in ("1", None, True, [1.0], torch.ones(2)):
        with pytest.raises(TypeError, match="w must be a real number"):
            checks.check_finite_param("w", bad)


def test_check_int_and_choice():
    assert checks.check_int("n", 3, 1) == 3
    with pytest.raises(ValueError, match="n must be >= 1"):
        checks.check_int("n", 0, 1)
    for bad in (1.0, True, "1"):
        with pytest.raises(TypeError, match="n must be an int"):
            checks.check_int("n", bad)
    checks.check_choice("divergence", "jsd", L.DIVERGENCES)
    with pytest.raises(ValueError, match=r"unknown divergence 'kl'; choose one of \('forward_kl'"):
        checks.check_choice("divergence", "kl", L.DIVERGENCES)
    with pytest.raises(ValueError, match="unknown divergence None"):
        checks.check_choice("divergence", None, L.DIVERGENCES)


def test_check_labels():
    checks.check_labels(labels(), 4)
    checks.check_labels(labels(0, -100, 3), 4, -100, shape=(3,))
    checks.check_labels(labels(0, 9), 4, where=torch.tensor([True, False]))  # 9 is not looked at
    checks.check_labels(labels(0, 9).int(), 4, any_int=True, where=torch.tensor([True, False]))
    checks.check_labels(torch.zeros(0, dtype=torch.long), 4)
    checks.check_labels(labels(99), None)  # type / dtype only
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\) or equal ignore_index=-100, got 4"):
        checks.check_labels(labels(0, 4), 4, -100)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\), got -100"):
        checks.check_labels(labels(0, -100), 4)
    with pytest.raises(ValueError, match=r"\[0, V=4\)"):
        checks.check_labels(labels(5), 4, size_name="V")
    with pytest.raises(ValueError, match="float labels"):
        checks.check_labels(labels().float(), 4)
    with pytest.raises(ValueError, match="int64"):
        checks.check_labels(labels().int(), 4)
    with pytest.raises(ValueError, match="int64"):
        checks.check_labels(labels().bool(), 4, any_int=True)
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        checks.check_labels(labels(), 4, shape=(3,))
    with pytest.raises(TypeError, match="labels"):
        checks.check_labels([0, 1], 4)


def test_check_indices():
    checks.check_indices("keep", keep(), 4, shape=(2, 2), unique_rows=True)
    with pytest.raises(ValueError, match=r"keep indexes patches \[0, 4\] but there are 4"):
        checks.check_indices("keep", keep(((0, 4),)), 4, what="patches")
    with pytest.raises(ValueError, match="distinct"):
        checks.check_indices("keep", keep(((1, 1),)), 4, unique_rows=True)
    checks.check_indices("keep", keep(((1, 1),)), 4)  # repeats allowed unless asked
    with pytest.raises(ValueError, match=r"keep must have shape \(2, 2\)"):
        checks.check_indices("keep", keep(((0, 1),)), 4, shape=(2, 2))
    with pytest.raises(ValueError, match="int64"):
        checks.check_indices("keep", keep().int(), 4)


def test_check_values_and_class_weights():
    checks.check_values("x", torch.tensor([1.0, -INF]), allow_neg_inf=True)
    checks.check_values("x", torch.tensor([INF, -INF]), allow_inf=True)
    checks.check_values("x", torch.tensor([1, 2]))  # integers hold no NaN
    with pytest.raises(ValueError, match=r"x contains NaN or \+inf"):
        checks.check_values("x", torch.tensor([1.0, INF]), allow_neg_inf=True)
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        checks.check_values("x", torch.tensor([1.0, -INF]))
    with pytest.raises(ValueError, match="x contains NaN"):
        checks.check_values("x", torch.tensor([NAN]), allow_inf=True)
    checks.check_class_weights(None, 3)
    checks.check_class_weights(torch.tensor([0.0, 1.0, 2.0]), 3)
    with pytest.raises(ValueError, match=r"class_weights must have shape \(3,\)"):
        checks.check_class_weights(torch.ones(4), 3)


# ----------------------------------------------------------------------------- the switch


def test_value_checks_switch_skips_only_value_checks():
    assert checks.values_checked()
    bad = with_nan(logits())
    with checks.value_checks(False):
        assert not checks.values_checked()
        assert torch.isnan(LS.kd_loss(bad, logits(seed=1)))  # NaN passes through, no ValueError
        checks.check_labels(labels(0, 99), 4)  # ranges are value checks too
        checks.check_indices("keep", keep(((9, 9),)), 4, unique_rows=True)
        with pytest.raises(ValueError, match="finite"):  # hyper-parameters are always checked
            LS.kd_loss(logits(), logits(seed=1), T=INF)
        with pytest.raises(TypeError):  # and types
            LS.kd_loss(logits().numpy(), logits(seed=1))
        with pytest.raises(ValueError, match="int64"):  # and dtypes
            LS.dkd_loss(logits(), logits(seed=1), labels().float())
        with checks.value_checks(True):
            with pytest.raises(ValueError, match="NaN"):
                LS.kd_loss(bad, logits(seed=1))
        assert not checks.values_checked()
    assert checks.values_checked()


def test_value_checks_restored_after_an_error():
    with pytest.raises(RuntimeError), checks.value_checks(False):
        raise RuntimeError
    assert checks.values_checked()


def test_value_checks_off_by_environment():
    code = "from cookbook import checks; print(checks.values_checked())"
    for value, expected in (("0", "False"), ("off", "False"), ("1", "True")):
        env = {**os.environ, "COOKBOOK_CHECK_VALUES": value, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


@pytest.mark.parametrize("call", [
    lambda: LS.kd_loss(logits(), logits(seed=1), labels=labels(0, 1, -100, 3), alpha=0.3, reduction="none"),
    lambda: LS.dkd_loss(logits(), logits(seed=1), labels()),
    lambda: LS.pld_loss(logits(), logits(seed=1), labels()),
    lambda: LS.ofa_loss(logits(), logits(seed=1), labels(), gamma=2.0),
    lambda: G.ffg2m_loss(logits(), logits(seed=1), edges(), labels(0, -100, 2, 3)),
    lambda: LS.masked_reconstruction_loss(tokens(), tokens(seed=1), keep()),
    lambda: L.forward_kl(logits(6, 11), logits(6, 11, 1), labels=torch.tensor([1, 2, -100, 4, 5, 6])),
    lambda: fused(labels=torch.tensor([1, 2, -100, 4, 5, 6])),
])
def test_valid_inputs_give_the_same_numbers_with_checks_on_and_off(call):
    on = call()
    with checks.value_checks(False):
        off = call()
    assert torch.equal(on, off)


def test_no_host_sync_with_value_checks_off(monkeypatch):
    """With value checks off, validating LS.kd_loss / LS.dkd_loss reads no tensor data (no .item / bool)."""
    calls = []

    def spy(name):
        orig = getattr(torch.Tensor, name)

        def wrapped(self, *a, **k):
            calls.append(name)
            return orig(self, *a, **k)
        return wrapped

    for name in ("__bool__", "item", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, spy(name))
    LS.kd_loss(logits(), logits(seed=1), labels=labels(), alpha=0.5)
    assert calls, "the spy sees the syncs of the value checks when they are on"
    calls.clear()
    with checks.value_checks(False):
        LS.kd_loss(logits(), logits(seed=1), labels=labels(), alpha=0.5)
        LS.dkd_loss(logits(), logits(seed=1), labels())
        LS.pld_loss(logits(), logits(seed=1), labels())
        LS.ofa_loss(logits(), logits(seed=1), labels())
        LS.masked_reconstruction_loss(tokens(), tokens(seed=1), keep())
    assert calls == []


# ----------------------------------------------------------------------------- properties

PROP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def batches(draw, ignore=False, min_b=1):
    b, c = draw(st.integers(min_b, 6)), draw(st.integers(3, 8))
    ids = st.integers(0, c - 1) | st.just(-100) if ignore else st.integers(0, c - 1)
    y = torch.tensor(draw(st.lists(ids, min_size=b, max_size=b)))
    seed = draw(st.integers(0, 2**16))
    return logits(b, c, seed), logits(b, c, seed + 1), y


@PROP
@given(batches(ignore=True), st.floats(0.0, 1.0), st.floats(0.1, 10.0))
def test_valid_random_labels_never_raise_kd(batch, alpha, T):
    s, t, y = batch
    assert torch.isfinite(LS.kd_loss(s, t, labels=y, alpha=alpha, T=T))


@PROP
@given(batches())
def test_valid_random_labels_never_raise(batch):
    s, t, y = batch
    for loss in (LS.dkd_loss(s, t, y), LS.pld_loss(s, t, y), LS.ofa_loss(s, t, y), LS.dho_loss(s, y, s, t)):
        assert torch.isfinite(loss)


@PROP
@given(batches(ignore=True, min_b=2))
def test_valid_random_graph_labels_never_raise(batch):
    s, t, y = batch
    n = len(y)
    ring = torch.stack([torch.arange(n), torch.arange(n).roll(1)])
    assert torch.isfinite(G.ffg2m_loss(s, t, torch.cat([ring, ring.flip(0)], 1), y))


@PROP
@given(batches(), st.integers(1, 50))
def test_out_of_range_labels_always_raise(batch, offset):
    s, t, y = batch
    y = y.clone()
    y[0] = s.shape[1] - 1 + offset
    for loss in (LS.dkd_loss, LS.pld_loss, LS.ofa_loss):
        with pytest.raises(ValueError, match="labels must lie"):
            loss(s, t, y)
    with pytest.raises(ValueError, match="labels must lie"):
        LS.kd_loss(s, t, labels=y, alpha=0.5)


HYPER = [
    ("kd T", lambda v: LS.kd_loss(logits(), logits(seed=1), T=v)),
    ("kd alpha", lambda v: LS.kd_loss(logits(), logits(seed=1), labels=labels(), alpha=v)),
    ("dkd alpha", lambda v: LS.dkd_loss(logits(), logits(seed=1), labels(), alpha=v)),
    ("dkd beta", lambda v: LS.dkd_loss(logits(), logits(seed=1), labels(), beta=v)),
    ("pld T", lambda v: LS.pld_loss(logits(), logits(seed=1), labels(), T=v)),
    ("ofa gamma", lambda v: LS.ofa_loss(logits(), logits(seed=1), labels(), gamma=v)),
    ("meal adv_weight", lambda v: LS.meal_v2_loss(logits(), LS.soft_targets(logits(seed=1)), disc(), target_logits=logits(seed=1), adv_weight=v)),
    ("dho lam", lambda v: LS.dho_loss(logits(), labels(), logits(), logits(seed=1), lam=v)),
    ("dual alpha", lambda v: LS.dual_head_probs(logits(), logits(seed=1), alpha=v)),
    ("hfd tau", lambda v: G.high_frequency_loss(logits(), logits(seed=1), edges(), tau=v)),
    ("ffg2m lam", lambda v: G.ffg2m_loss(logits(), logits(seed=1), edges(), labels(), lam=v)),
    ("vq T", lambda v: G.soft_code_assignments(torch.randn(4, 3), torch.randn(5, 3), T=v)),
    ("contextual h", lambda v: LS.contextual_loss(tokens(), tokens(seed=1), h=v)),
    ("llm T", lambda v: L.forward_kl(logits(6, 11), logits(6, 11, 1), T=v)),
    ("jsd beta", lambda v: L.generalized_jsd(logits(6, 11), logits(6, 11, 1), beta=v)),
    ("taid t", lambda v: L.taid_loss(logits(6, 11), logits(6, 11, 1), t=v)),
    ("skew alpha", lambda v: L.skew_reverse_kl(logits(6, 11), logits(6, 11, 1), alpha=v)),
    ("sinkhorn epsilon", lambda v: L.sinkhorn_loss(logits(6, 11), logits(6, 11, 1), epsilon=v)),
    ("fused T", lambda v: fused(T=v)),
    ("auto_chunk budget", lambda v: auto_chunk_size(100, 50, 8, budget=v)),
]


@PROP
@given(st.sampled_from(HYPER), st.sampled_from([NAN, INF, -INF]))
def test_any_non_finite_hyper_parameter_raises(case, value):
    _, call = case
    with pytest.raises(ValueError):
        call(value)


@PROP
@given(st.integers(1, 4), st.integers(2, 12), st.floats(0.05, 0.95))
def test_random_keep_is_always_accepted(batch, n, ratio):
    k = random_keep(batch, n, ratio)
    if k.shape[1] < n:
        LS.masked_reconstruction_loss(tokens(batch, n, 3), tokens(batch, n, 3, seed=1), k)


def test_finite_values_in_range_pass_every_hyper_parameter():
    for _, call in HYPER:
        call(0.5)
