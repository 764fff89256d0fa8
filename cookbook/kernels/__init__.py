"""Fused chunked distillation losses: the student's vocab projection and the divergence in one
pass that never materialises the (N, V) logits. Layers: reference (``cookbook.losses.llm``) ->
chunked torch path (``chunked.py``, any device) -> Triton kernel (``triton_kd.py``, CUDA; CPU via
the Triton interpreter in tests). ``bench.py`` is ``cookbook bench kd-loss``.
"""

from cookbook.kernels.fused import (
    TeacherHead,
    auto_chunk_size,
    fused_linear_distill,
    triton_available,
)
from cookbook.losses.llm import TopKTeacher

__all__ = [
    "TeacherHead",
    "TopKTeacher",
    "auto_chunk_size",
    "fused_linear_distill",
    "triton_available",
]
