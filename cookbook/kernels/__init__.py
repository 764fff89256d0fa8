"""Fused chunked distillation losses: the student's vocab projection and the divergence in one
pass that never materialises the (N, V) logits. Layers: reference (``cookbook.losses.llm``) ->
chunked torch path (``chunked.py``, any device) -> Triton kernel (``triton_kd.py``, CUDA; CPU via
the Triton interpreter in tests); for a top-k teacher, ``topk_tile.py`` streams the head in tiles
and writes no logits at all (``backend="tile"``). A top-k cached teacher is a ``cookbook.losses.llm.TopKTeacher``.
The benchmark is ``cookbook bench kd-loss`` (``cookbook/bench/kd_loss.py``).
"""

from cookbook.kernels.fused import (
    TeacherHead,
    auto_chunk_size,
    fused_linear_ce,
    fused_linear_distill,
    triton_available,
)

__all__ = [
    "TeacherHead",
    "auto_chunk_size",
    "fused_linear_ce",
    "fused_linear_distill",
    "triton_available",
]
