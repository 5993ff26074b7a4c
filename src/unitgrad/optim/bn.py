"""Keep BatchNorm running statistics out of the second (perturbed) pass."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@contextlib.contextmanager
def bn_update_disabled(model: nn.Module) -> Iterator[None]:
    """Inside, BatchNorm layers leave running_mean/var and num_batches_tracked exactly as they were.

    Training-mode outputs still use batch statistics (eval mode uses the running ones, as always): with
    `track_running_stats` off in train mode, BatchNorm normalises by the batch and touches no buffer, so
    nothing is copied or restored and cumulative averaging (momentum=None) is unaffected.
    """
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    try:
        for layer in layers:
            layer.track_running_stats = False
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True
