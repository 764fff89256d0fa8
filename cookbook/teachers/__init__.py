"""Teachers: the registry (``load``, ``build``, ``card``) and the ``Teacher`` wrapper.

Registered teachers (weights in assets/teachers/, rebuilt by ``python -m cookbook.teachers build NAME``):
- ``fmnist-cnn``: SmallCNN (0.19M parameters) on Fashion-MNIST, >= 92% test accuracy.
- ``fmnist-resnet``: TinyResNet (20k parameters), ``fmnist-mlp``: MLP 784-256-256-10 (0.27M parameters):
  two more, cheaper teacher families for ensemble distillation (MEAL V2, notebook 01a).
- ``fmnist-lt-cnn``: SmallCNN (64k parameters) on long-tailed Fashion-MNIST, SAM + DRW (notebook 01b).
"""

from cookbook.models import MLP, SmallCNN, TinyResNet
from cookbook.teachers import recipes
from cookbook.teachers.registry import (
    REGISTRY,
    TeacherSpec,
    build,
    card,
    freeze,
    get_spec,
    load,
    register,
)
from cookbook.teachers.wrapper import Teacher

register(TeacherSpec(
    name="fmnist-cnn",
    architecture=lambda: SmallCNN(width=32),
    recipe=recipes.fmnist_cnn,
    metric="test_acc",
    description="SmallCNN(width=32), 0.19M params, Fashion-MNIST 55k train, shift+flip, 12 epochs AdamW",
))

register(TeacherSpec(
    name="fmnist-resnet",
    architecture=lambda: TinyResNet(width=16),
    recipe=recipes.fmnist_resnet,
    metric="test_acc",
    description="TinyResNet(width=16), residual blocks + global average pool, Fashion-MNIST 55k, shift+flip, 8 epochs AdamW",
))

register(TeacherSpec(
    name="fmnist-mlp",
    architecture=lambda: MLP(hidden=(256, 256)),
    recipe=recipes.fmnist_mlp,
    metric="test_acc",
    description="MLP 784-256-256-10, Fashion-MNIST 55k, no augmentation, 15 epochs AdamW",
))

register(TeacherSpec(
    name="fmnist-lt-cnn",
    architecture=lambda: SmallCNN(width=16),
    recipe=recipes.fmnist_lt_cnn,
    metric="test_acc",
    description="SmallCNN(width=16), 64k params, long-tailed Fashion-MNIST (2,478 images, imbalance 100), "
                "SAM + DRW, 30 epochs AdamW; DeiT-LT's flat CNN teacher (notebook 01b)",
))

__all__ = ["REGISTRY", "Teacher", "TeacherSpec", "build", "card", "freeze", "get_spec", "load", "register"]
