"""A compact, Dassl.pytorch-compatible training engine.

Only the parts that prompt-learning trainers use are implemented: config defaults, the trainer
lifecycle, data management, optimisers, LR schedules, evaluation and small utilities. Module and
function names follow Dassl.pytorch so that Dassl-based trainers can be dropped in.
"""

__version__ = "0.1.0"
