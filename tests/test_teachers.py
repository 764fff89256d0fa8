import shutil

import pytest
import torch
from torch import nn

from cookbook import assets, teachers
from cookbook.data import load_fashion_mnist, normalize_images
from cookbook.train import evaluate


@pytest.fixture(scope="module")
def fmnist_teacher():
    return teachers.load("fmnist-cnn")


def test_load_is_frozen_and_checked(fmnist_teacher):
    assert not fmnist_teacher.training
    assert all(not p.requires_grad for p in fmnist_teacher.parameters())
    assert len(fmnist_teacher.fingerprint) == 16


def test_fmnist_teacher_accuracy_matches_its_card(fmnist_teacher):
    test = load_fashion_mnist("test")
    acc = evaluate(fmnist_teacher, normalize_images(test.X), test.y)
    card = teachers.card("fmnist-cnn")
    if test.source == "assets subset":          # 2,000 test images: a looser bound
        assert acc >= 0.90
    else:                                        # the full 10k test set: the card's number exactly
        assert acc >= 0.92
        assert acc == pytest.approx(card["metrics"]["test_acc"], abs=1e-4)
    assert card["bytes"] <= 5e6 and card["sha256"] == assets.read_manifest()["teachers/fmnist-cnn.safetensors"][0]


def test_unknown_teacher():
    with pytest.raises(ValueError, match="unknown teacher 'nope'.*fmnist-cnn"):
        teachers.load("nope")


def test_corrupt_asset_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "assets"
    shutil.copytree(assets.ASSETS / "teachers", fake / "teachers")
    shutil.copy(assets.MANIFEST, fake / "MANIFEST")
    monkeypatch.setattr(assets, "ASSETS", fake)
    monkeypatch.setattr(assets, "MANIFEST", fake / "MANIFEST")
    assert teachers.load("fmnist-cnn") is not None
    with open(fake / "teachers" / "fmnist-cnn.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ValueError, match="corrupt"):
        teachers.load("fmnist-cnn")
    (fake / "teachers" / "fmnist-cnn.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        teachers.load("fmnist-cnn")


def test_teacher_features_and_cache(fmnist_teacher, tmp_path, monkeypatch):
    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path))
    t = teachers.Teacher(fmnist_teacher, layers=["stage1", "stage2", "stage3"], name="fmnist-cnn")
    x = torch.randn(3, 1, 28, 28)
    out, feats = t.features(x)
    assert out.shape == (3, 10)
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "stage1": (3, 32, 14, 14), "stage2": (3, 64, 7, 7), "stage3": (3, 128, 7, 7)}
    first = t.cached_outputs(x, key="demo")
    assert torch.allclose(first, out)
    files = list((tmp_path / "teacher_outputs").glob("*.npy"))
    assert len(files) == 1
    assert torch.equal(t.cached_outputs(x, key="demo"), first)                # read back from disk
    t.cached_outputs(x + 1, key="demo")                                       # other data: new file
    assert len(list((tmp_path / "teacher_outputs").glob("*.npy"))) == 2
    with pytest.raises(ValueError, match="no submodule"):
        teachers.Teacher(fmnist_teacher, layers=["stage9"])


def test_build_writes_asset_card_and_manifest(tmp_path, monkeypatch):
    from cookbook.teachers import registry

    monkeypatch.setattr(registry, "ASSETS", tmp_path)
    monkeypatch.setattr(assets, "ASSETS", tmp_path)
    monkeypatch.setattr(assets, "MANIFEST", tmp_path / "MANIFEST")
    monkeypatch.setattr(registry, "REGISTRY", {})

    def recipe(seed):
        torch.manual_seed(seed)
        return nn.Linear(4, 2), {"acc": 0.5}

    teachers.register(teachers.TeacherSpec("toy", lambda: nn.Linear(4, 2), recipe, "acc", "a toy"))
    card = registry.build("toy", seed=3)
    assert card["metrics"] == {"acc": 0.5} and card["parameters"] == 10
    manifest = assets.read_manifest()
    assert set(manifest) == {"teachers/toy.safetensors", "teachers/toy.json"}
    model = registry.load("toy")
    torch.manual_seed(3)
    assert torch.equal(model.weight, nn.Linear(4, 2).weight)
    with pytest.raises(ValueError, match="already registered"):
        teachers.register(teachers.TeacherSpec("toy", lambda: nn.Linear(4, 2), recipe, "acc", "again"))


def test_random_shift_flip_keeps_background_and_content():
    from cookbook.data.augment import random_shift_flip

    x = torch.full((64, 1, 8, 8), -0.8)
    x[:, :, 3:5, 3:5] = 2.0                                   # a bright 2x2 square on a dark background
    out = random_shift_flip(x, max_shift=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.all((out == x.amin()) | (out == 2.0))        # borders padded with the background, not 0
    assert torch.all((out == 2.0).sum((1, 2, 3)) == 4)        # the square is moved, never cropped (shift 2)
    assert not torch.equal(out, x)


def test_long_tailed_teacher_matches_its_card():
    from cookbook.teachers.recipes import fmnist_long_tailed

    model = teachers.load("fmnist-lt-cnn")
    card = teachers.card("fmnist-lt-cnn")
    _, y_lt, counts = fmnist_long_tailed()
    assert counts == card["metrics"]["train_counts"] and torch.bincount(y_lt).tolist() == counts
    test = load_fashion_mnist("test")
    acc = evaluate(model, normalize_images(test.X), test.y)
    if test.source != "assets subset":
        assert acc == pytest.approx(card["metrics"]["test_acc"], abs=1e-4)
    assert acc >= 0.75 and card["bytes"] <= 2e6


def test_sam_step_uses_the_gradient_at_the_perturbed_weights():
    from cookbook.teachers.recipes import sam_step

    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))

    def loss_fn(m, xb, yb):
        return nn.functional.cross_entropy(m(xb), yb)

    w0 = [p.detach().clone() for p in model.parameters()]
    g0 = torch.autograd.grad(loss_fn(model, x, y), list(model.parameters()))
    norm = torch.sqrt(sum((g ** 2).sum() for g in g0))
    probe = nn.Linear(3, 2)
    with torch.no_grad():
        for p, w, g in zip(probe.parameters(), w0, g0):
            p.copy_(w + 0.05 * g / norm)                                  # w + rho g / ||g||
    g1 = torch.autograd.grad(loss_fn(probe, x, y), list(probe.parameters()))
    sam_step(model, loss_fn, (x, y), torch.optim.SGD(model.parameters(), lr=0.1), rho=0.05)
    for p, w, g in zip(model.parameters(), w0, g1):
        assert torch.allclose(p, w - 0.1 * g, atol=1e-6)                # stepped from w, not from w + e


# ----------------------------------------------------------------------------- any teacher, no stale cache


def test_cached_outputs_follow_weight_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model, X = nn.Linear(4, 3), torch.randn(8, 4)
    t = teachers.Teacher(model, name="lin")
    first = t.cached_outputs(X, "x").clone()
    with torch.no_grad():
        model.weight.add_(1.0)                                   # an in-place change, like an optimizer step
    second = t.cached_outputs(X, "x")
    torch.testing.assert_close(second, model(X).detach())
    assert not torch.allclose(first, second)
    model.load_state_dict({k: v * 0 for k, v in model.state_dict().items()})
    assert t.cached_outputs(X, "x").abs().max() == 0


def test_registered_teacher_fingerprint_is_its_asset_until_the_weights_change():
    model = teachers.load("fmnist-cnn")
    t = teachers.Teacher(model, name="fmnist-cnn")
    asset_fp = assets.read_manifest()["teachers/fmnist-cnn.safetensors"][0][:16]
    assert t.fingerprint == asset_fp
    with torch.no_grad():
        next(model.parameters()).mul_(0.5)
    assert t.fingerprint != asset_fp


@pytest.mark.parametrize("key", ["../../x", "/tmp/x", "a/b", "", ".hidden", "a b"])
def test_cache_keys_cannot_escape_the_cache_folder(key):
    with pytest.raises(ValueError, match="cache key"):
        teachers.Teacher(nn.Linear(2, 2)).cached_outputs(torch.zeros(1, 2), key)


def test_teacher_rejects_bad_arguments():
    with pytest.raises(TypeError, match="layers=\\['stage1'\\]"):
        teachers.Teacher(nn.Linear(2, 2), layers="stage1")
    with pytest.raises(TypeError, match="nn.Module"):
        teachers.Teacher(lambda x: x)
    with pytest.raises(TypeError, match="torch.Tensor"):
        teachers.Teacher(nn.Linear(2, 2)).cached_outputs([[0.0, 1.0]], "x")


def test_transformers_teacher_returns_logits_and_caches(tmp_path, monkeypatch):
    from transformers import BertConfig, BertForSequenceClassification

    from cookbook.losses import kd_loss

    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=3)
    t = teachers.Teacher(BertForSequenceClassification(config), name="tiny-bert")
    ids = torch.randint(30, (4, 5))
    logits = t(ids)
    assert logits.shape == (4, 3)
    assert kd_loss(torch.randn(4, 3), logits, T=2.0).isfinite()      # the README's snippet works
    torch.testing.assert_close(t.cached_outputs(ids, "ids"), logits)
    hidden = teachers.Teacher(t.model, output="hidden_states")
    with pytest.raises(ValueError, match="no field 'hidden_states'"):
        hidden(ids)


def test_tuple_and_pyg_and_timm_teachers():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(x), x
    x = torch.randn(5, 3)
    pair = teachers.Teacher(Pair())
    torch.testing.assert_close(pair(x), pair.model.lin(x))               # a tuple's first element
    assert isinstance(teachers.Teacher(Pair(), output=None)(x), tuple)  # or the raw output

    from cookbook.models.graph import GNN
    gnn = teachers.Teacher(GNN("gcn", 3, 2, hidden=8))
    ei = torch.tensor([[0, 1, 2], [1, 2, 3]])
    assert gnn(torch.randn(4, 3), ei).shape == (4, 2)

    import timm
    vit = teachers.Teacher(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=4, img_size=32,
                                             patch_size=8, depth=1, embed_dim=32, num_heads=2))
    assert vit(torch.randn(2, 3, 32, 32)).shape == (2, 4)


@pytest.mark.parametrize("bad", ["small images", "labels 100-119", "labels of another set"])
def test_user_data_of_the_wrong_shape_or_range_is_refused(tmp_path, monkeypatch, bad):
    import numpy as np

    from cookbook import data
    from cookbook.data import images

    z = dict(np.load(assets.ASSETS / images.MNIST10K_ASSET))
    if bad == "small images":
        z["images"] = z["images"][:, :5, :5]
    elif bad == "labels 100-119":
        z["labels"] = (z["labels"] % 20 + 100).astype(np.uint8)
    else:
        z["labels"] = z["labels"][:-3]
    np.savez(tmp_path / "mnist10k.npz", **z)
    monkeypatch.setenv("COOKBOOK_DATA", str(tmp_path))
    data.clear_cache()
    with pytest.raises(ValueError, match="images must be|labels must be|same length"):
        data.load_mnist10k("test")
    data.clear_cache()


def test_every_teacher_card_says_which_labels_it_saw():
    # a label-scarce result means nothing until we know the labels its teacher was trained on
    from cookbook.teachers.recipes import SPECS

    for name, spec in SPECS.items():
        assert isinstance(spec.labels, str) and spec.labels.strip(), f"{name}: TeacherSpec.labels is missing"
        assert teachers.card(name)["labels"] == spec.labels
    assert "1,000" in teachers.card("fmnist-cnn-1k")["labels"] and "55,000" in teachers.card("fmnist-cnn")["labels"]
