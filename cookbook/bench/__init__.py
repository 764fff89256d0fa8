"""Benchmarks, one module per benchmark: ``cookbook bench NAME`` runs ``main(argv)`` of its module.

``kd_loss``: the fused distillation head (``cookbook.kernels``) against naive and chunked paths.
``graph``: single-node inference time of the MLP students against the GNN teachers (notebook 02).
Each writes a CSV with the device, the date and the commit, and reports ratios measured in one run.
"""
