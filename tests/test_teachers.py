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
