"""Algorithms that are more than a loss, one module per family.

``vision``: DisWOT's training-free ranking of student architectures (notebook 01a). Later
families add theirs here: dataset-distillation synthesis loops, speculative-decoding loops,
diffusion samplers and distillation steps, tokenizer embedding transfer.
"""
