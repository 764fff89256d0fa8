import pytest
import torch
from torch import nn

from cookbook import teachers
from cookbook.methods.vision import (
    class_activation_maps,
    diswot_score,
    features_and_logits,
    relation_gram,
    semantic_gram,
)
from cookbook.models import MLP, DualHead, PlainCNN, TinyResNet


def test_identical_networks_score_zero_and_scale_invariance():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 28, 28)
    net = PlainCNN(((4,), (8,), (8,)))
    r = diswot_score(net, net, x, student_layer="stage3", teacher_layer="stage3")
    assert r["semantic"] == pytest.approx(0.0, abs=1e-6) and r["relation"] == pytest.approx(0.0, abs=1e-6)
    feats = torch.randn(5, 3, 4, 4)
    assert torch.allclose(relation_gram(feats), relation_gram(feats * 7.0), atol=1e-6)
    assert relation_gram(feats).norm().item() == pytest.approx(1.0, abs=1e-6)


def test_grad_cam_of_a_linear_pooled_head_is_the_class_weight_map():
    # logits = W mean_hw(F): d z_c / d F_k = W_ck / HW, so the map is ReLU(sum_k W_ck F_k) / HW
    torch.manual_seed(1)
    feats = torch.randn(2, 3, 4, 4, requires_grad=True)
    W = torch.randn(5, 3)
    logits = feats.mean((2, 3)) @ W.T
    maps = class_activation_maps(feats, logits)                               # (5, 2*4*4)
    want = torch.relu(torch.einsum("ck,bkhw->cbhw", W, feats.detach()) / 16).flatten(1)
    assert torch.allclose(maps, want, atol=1e-6)
    assert semantic_gram(feats, logits).shape == (5, 5)


def test_score_leaves_networks_untouched_and_bad_input():
    torch.manual_seed(2)
    x = torch.randn(6, 1, 28, 28)
    teacher = teachers.load("fmnist-cnn")
    student = PlainCNN(((4,), (4,), (8,)), kernel=5)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    r = diswot_score(student, teacher, x, student_layer="stage3", teacher_layer="stage3")
    assert r["score"] == pytest.approx(-(r["semantic"] + r["relation"]))
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ValueError, match="no submodule"):
        diswot_score(student, teacher, x, student_layer="nope", teacher_layer="stage3")
    with pytest.raises(ValueError, match="at least 2"):
        diswot_score(student, teacher, x[:1], student_layer="stage3", teacher_layer="stage3")
    with pytest.raises(ValueError, match="same classes"):
        diswot_score(PlainCNN(num_classes=5), teacher, x, student_layer="stage3", teacher_layer="stage3")


def test_flat_features_count_as_one_by_one_maps():
    mlp = MLP(hidden=(16,))
    feats, logits = features_and_logits(mlp, "net.2", torch.randn(4, 1, 28, 28))
    assert feats.shape == (4, 16) and class_activation_maps(feats, logits).shape == (10, 4)


def test_models_shapes_and_bad_config():
    x = torch.randn(3, 1, 28, 28)
    assert TinyResNet()(x).shape == (3, 10)
    assert PlainCNN(((8,), (8, 8), (16,)), kernel=5)(x).shape == (3, 10)
    ce, kd = DualHead(nn.Flatten(), 784)(x)
    assert ce.shape == kd.shape == (3, 10)
    with pytest.raises(ValueError, match="odd kernel"):
        PlainCNN(kernel=4)


@pytest.mark.parametrize("name, floor", [("fmnist-resnet", 0.85), ("fmnist-mlp", 0.88)])
def test_extra_teachers_are_small_and_match_their_cards(name, floor):
    from cookbook.data import load_fashion_mnist, normalize_images
    from cookbook.train import evaluate

    model, card = teachers.load(name), teachers.card(name)
    assert card["bytes"] < 2e6 and card["metrics"]["test_acc"] >= floor
    test = load_fashion_mnist("test")
    acc = evaluate(model, normalize_images(test.X), test.y)
    if test.source != "assets subset":
        assert acc == pytest.approx(card["metrics"]["test_acc"], abs=1e-4)
