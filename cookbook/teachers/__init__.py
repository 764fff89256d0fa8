"""Teachers: the registry (``load``, ``build``, ``card``) and the ``Teacher`` wrapper.

Registered teachers (weights in assets/teachers/, rebuilt by ``python -m cookbook.teachers build NAME``;
their specs and recipes are in ``cookbook.teachers.recipes``, read on the first lookup):
- ``fmnist-cnn``: SmallCNN (0.19M parameters) on Fashion-MNIST, all 55,000 training labels, >= 92% test accuracy.
- ``fmnist-cnn-1k``, ``fmnist-cnn-550``, ``fmnist-cnn-5500``: the same network trained only on the labelled
  images of a label-scarce regime (notebook 00's 1,000; notebook 01a's DHO 1% and 10%), so the student's
  teacher has seen no label the student lacks.
- ``fmnist-resnet``: TinyResNet (20k parameters), ``fmnist-mlp``: MLP 784-256-256-10 (0.27M parameters):
  two more, cheaper teacher families for ensemble distillation (MEAL V2, notebook 01a).
- ``fmnist-lt-cnn``: SmallCNN (64k parameters) on long-tailed Fashion-MNIST, SAM + DRW (notebook 01b).
The LLM teacher (SmolLM2-135M) and its top-k caches are in ``cookbook.teachers.llm`` / ``topk_cache``.
"""

from cookbook.teachers.registry import (
    REGISTRY,
    build,
    card,
    freeze,
    get_spec,
    load,
    register,
    specs,
)
from cookbook.teachers.spec import TeacherSpec
from cookbook.teachers.wrapper import Teacher

__all__ = ["REGISTRY", "Teacher", "TeacherSpec", "build", "card", "freeze", "get_spec", "load", "register",
           "specs"]
