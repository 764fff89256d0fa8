"""Teachers: the registry (``load``, ``build``, ``card``) and the ``Teacher`` wrapper.

Registered teachers (weights in assets/teachers/, rebuilt by ``python -m cookbook.teachers build NAME``):
- ``fmnist-cnn``: SmallCNN (0.19M parameters) on Fashion-MNIST, >= 92% test accuracy.
"""

from cookbook.models import SmallCNN
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

__all__ = ["REGISTRY", "Teacher", "TeacherSpec", "build", "card", "freeze", "get_spec", "load", "register"]
