"""deepscope's dataset loops at toy sizes, run by test_loops.py under torchrun and alone.

usage: python loops.py OUT_DIR NAME[,NAME...] [KILL_AT]

Each loop NAME writes OUT_DIR/NAME/ (a Run: metrics.jsonl, checkpoints) and, on rank 0,
OUT_DIR/NAME/final.pt: {parameter name: tensor} of every trained network. Under torchrun
every process runs the same code with the same seed; the global batch is the same as alone.
KILL_AT: raise SystemExit(3) from run.log at that step (after a checkpoint), to test resume.
"""

import os
import sys

import torch

from deepscope.train import Run
from deepscope.train.distributed import init_distributed
from deepscope.train.rng import fork_seeded


def _data(n=96, d=12, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g)
    return x, x[:, :k].argmax(1).long()


def _mlp(g, d=12, k=3, hidden=(16, 16)):
    from deepscope.nets import MLP

    with fork_seeded(g):
        return MLP(d, list(hidden), k)


def robust(method: str, **options):
    def go(run, g):
        from deepscope.robust import make_objective, train_robust

        x, y = _data(n=90)  # batches of 32, 32, 26: an unequal last batch
        net = _mlp(g)
        obj = make_objective(method, eps=0.1, bounds=(0.0, 1.0), **options)
        train_robust(net, x, y, obj, generator=g, run=run,
                     options={"epochs": 3, "batch_size": 32}, log_every=1)
        out = {f"model.{k}": v for k, v in net.state_dict().items()}
        if method == "a3t":
            out |= {f"disc.{k}": v for k, v in obj.disc_.state_dict().items()}
        return out
    return go


def ib(method: str, noise: str | None):
    def go(run, g):
        from deepscope.data import Dataset
        from deepscope.mi.bottleneck import train_ib

        x, y = _data(n=120)
        ds = Dataset(x[:96], y[:96], x[96:], y[96:], 3, "toy")
        res = train_ib(ds, generator=g, run=run, method=method, noise=noise, beta=1e-2,
                       sigma=0.3, hidden=(16,), code_dim=4, critic_hidden=(16,),
                       options={"epochs": 3, "batch_size": 32}, eval_samples=2)
        model, mi = res.model, res.info["mi_loss"]
        out = {f"model.{k}": v for k, v in model.state_dict().items()}
        if mi is not None:
            out |= {f"mi.{k}": v for k, v in mi.state_dict().items()}
        return out
    return go


def alpha(a: float):
    def go(run, g):
        from deepscope.dynamics import AlphaScaled, LossLadder, ladder_levels, train_alpha

        x, y = _data(n=60)  # minibatches of 16, 16, 16, 12
        model = AlphaScaled(_mlp(g), a)
        ladder = LossLadder(ladder_levels(3, min_loss=0.3), window=4)
        train_alpha(model, x, y, generator=g, ladder=ladder, run=run,
                    options={"epochs": 6, "batch_size": 16, "lr": 0.05},
                    linearity_x=x[:20], kernel_x=x[:4], linearity_every=3, stop_when_done=False)
        out = {f"model.{k}": v for k, v in model.model.state_dict().items()}
        return out | ({"ladder_loss": ladder.stack("loss")} if ladder.next_ else {})
    return go


def feature_alignment(fraction: float):
    def go(run, g):
        from deepscope.dynamics import train_feature_alignment

        x, y = _data(n=96)
        x_test, y_test = _data(n=30, seed=1)
        res = train_feature_alignment(x, y, x_test, y_test, net="mlp", net_kwargs={"hidden": (16,)},
                                      num_classes=3, generator=g, run=run, random_labels=fraction,
                                      options={"epochs": 2, "batch_size": 16, "lr": 0.05},
                                      n_probe=8, per_layer=False)  # flat metrics: compared with a tolerance
        return {f"model.{k}": v for k, v in res.model.state_dict().items()}
    return go


def noisy(method: str, epochs: int, **kwargs):
    def go(run, g):
        from deepscope.robust import baselines, crosssplit

        x, y = _data(n=90)
        x_test, y_test = _data(n=30, seed=1)
        fn = {"crosssplit": crosssplit.train_crosssplit, "ce": baselines.train_ce,
              "coteaching": baselines.train_coteaching,
              "dividemix": baselines.train_dividemix}[method]
        res = fn(x, y, num_classes=3, generator=g, run=run, x_test=x_test, y_test=y_test,
                 net="mlp", net_kwargs={"hidden": (16,)},
                 options={"epochs": epochs, "batch_size": 16, "lr": 0.05}, **kwargs)
        return {f"{name}.{k}": v for name, m in res.models.items()
                for k, v in m.state_dict().items()}
    return go


def subruns(run, g):
    """A recipe's pattern: train a sub-run, write its result, read it back (every process)."""
    from deepscope.robust import Standard, train_robust

    x, y = _data(n=64)
    values = []
    for k in range(3):
        sub = run.child(f"part{k}", config={"k": k})
        if not sub.finished:
            net = _mlp(g)
            train_robust(net, x, y, Standard(), generator=g, run=sub,
                         options={"epochs": 1, "batch_size": 32})
            sub.write_result({"k": k, "w": float(net.classifier.weight.detach().sum())})
        values.append(sub.read_result()["w"])  # rank > 0 reads what rank 0 wrote
        run.log(k + 1, w=values[-1])
    return {"w": torch.tensor(values)}


LOOPS = {
    "subruns": subruns,
    "crosssplit": noisy("crosssplit", epochs=3, warmup_epochs=1, y_true=None),
    "crosssplit-epoch": noisy("crosssplit", epochs=3, warmup_epochs=1, refresh="epoch",
                              split="all", projection_dim=8),
    "ce": noisy("ce", epochs=2),
    "coteaching": noisy("coteaching", epochs=2, forget_rate=0.2),
    "dividemix": noisy("dividemix", epochs=3, warmup_epochs=1),
    "alpha-1": alpha(1.0),
    "alpha-10": alpha(10.0),
    "feature-alignment": feature_alignment(0.25),
    "ib-plain": ib("plain", None),
    "ib-vib": ib("vib", None),
    "ib-mine": ib("mine", "propagated"),
    "standard": robust("standard"),
    "fgsm-at": robust("fgsm-at"),
    "pgd-at": robust("pgd-at", steps=3),
    "pgd-at-l2": robust("pgd-at", steps=3, norm="l2"),
    "trades": robust("trades", steps=3),
    "a3t": robust("a3t", disc_hidden=(16,)),
}


class _Kill:
    def __init__(self, run, at):
        self.run, self.at, self.log = run, at, run.log

    def __call__(self, step, **metrics):
        self.log(step, **metrics)
        if step == self.at:
            raise SystemExit(3)


def main(out: str, names: str, kill_at: int | None) -> None:
    torch.set_num_threads(1)
    # DEEPSCOPE_CHECK_DEVICE=cuda (make gpu-check): one GPU per process, NCCL; default: CPU, gloo
    dist, dev = init_distributed(os.environ.get("DEEPSCOPE_CHECK_DEVICE", "cpu"))
    for name in names.split(","):
        run = Run(f"{out}/{name}", config={"loop": name}, seed=0, device=dev, progress=False)
        if kill_at is not None:
            run.log = _Kill(run, kill_at)
        state = LOOPS[name](run, torch.Generator().manual_seed(0))
        if dist.is_main:
            torch.save({k: v.detach().clone() for k, v in state.items()}, f"{out}/{name}/final.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
