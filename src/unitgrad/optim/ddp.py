"""DistributedDataParallel with two-pass optimizers: a per-replica perturbation, a synchronised update.

As in the SAM paper, each replica perturbs its weights with its own first-pass gradient (no all-reduce),
and only the second pass is averaged across replicas::

    with first_pass_no_sync(ddp_model):
        loss_fn(ddp_model(x), y).backward()      # local g: no all-reduce
    opt.first_step()                             # local e from local g
    with bn_update_disabled(ddp_model):
        loss_fn(ddp_model(x), y).backward()      # all-reduced: SAM/ASAM g*, PUGD g + g* (accumulated)
    opt.second_step()                            # identical update on every replica

For PUGD the synchronised gradient is mean_r(g_r + g*_r), since DDP averages the accumulated `.grad`.
"""

from __future__ import annotations

import contextlib

from torch import nn
from torch.nn.parallel import DistributedDataParallel


def first_pass_no_sync(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """`model.no_sync()` for a DDP model, also under `torch.compile` (gradients stay local); else a no-op context."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper keeps the compiled module here
    if isinstance(model, DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()
