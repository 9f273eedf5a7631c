"""Shared training plumbing: run directories, checkpoints, the loop kit, sub-run grids, seeds.

>>> import tempfile, torch
>>> from deepscope.train import Run, RunConfig, TrainOptions, setup
>>> model = torch.nn.Linear(3, 1); opt = torch.optim.SGD(model.parameters(), lr=1e-3)
>>> run = Run(tempfile.mkdtemp() + "/try1", config={"lr": 1e-3}, seed=0)
>>> run.restore(model=model, opt=opt)["step"]                       # 0 when fresh
0
>>> run.log(step=10, loss=0.5)
>>> run.save(10, model=model, opt=opt)
>>> run.restore(model=model, opt=opt)["step"]
10

Modules: ``run`` (``Run``, ``NullRun``), ``config`` (``RunConfig`` and the argument checks;
no torch), ``loop`` (the kit every training loop is written with: ``TrainOptions``, ``setup``,
``TrainResult``, ...), ``grid`` (sub-runs over settings and seeds), ``stats`` (``summarise``:
the one aggregation over seeds), ``rng`` (derived seeds and generators), ``distributed``
(torchrun: the device and the process group, sharding, gradient averaging).
Importing this package does not import torch; the names load on first use.
"""

from deepscope.train.config import RunConfig, check_float, check_int, require

__all__ = [
    "RunConfig", "require", "check_int", "check_float",
    "Run", "NullRun", "read_result", "is_finished",
    "TrainOptions", "TrainResult", "setup", "make_models", "make_optimizer",
    "Grid", "summarise",
    "derive_seed", "make_generator", "fork_seeded", "seed_globals",
    "resolve_device", "init_distributed",
]

_LAZY = {
    **{n: "deepscope.train.run" for n in ("Run", "NullRun", "read_result", "is_finished")},
    **{n: "deepscope.train.loop" for n in ("TrainOptions", "TrainResult", "setup", "make_models",
                                           "make_optimizer")},
    "Grid": "deepscope.train.grid",
    "summarise": "deepscope.train.stats",
    **{n: "deepscope.train.rng" for n in ("derive_seed", "make_generator", "fork_seeded",
                                          "seed_globals")},
    **{n: "deepscope.train.distributed" for n in ("resolve_device", "init_distributed")},
}


def __getattr__(name):  # lazy: RunConfig must stay importable without torch
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepscope.train' has no attribute {name!r}")
