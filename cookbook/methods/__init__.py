"""Algorithms that are more than a loss, one module per family.

``vision``: DisWOT's training-free ranking of student architectures (notebook 01a).
``tokenizer``: BPE training and merge-list replay, P69's mixture LP, P60's StochasTok, the
addition task and bits-per-byte scoring of notebook 08b. Later
families add theirs here: dataset-distillation synthesis loops, speculative-decoding loops,
diffusion samplers and distillation steps, tokenizer embedding transfer.
"""
