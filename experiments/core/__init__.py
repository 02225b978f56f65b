"""The shared layer under the experiments: configs, run directories, errors, evaluation.

Nothing here imports an experiment; experiments 1, 2 and 3 and the sweeps are built on it.
"""
