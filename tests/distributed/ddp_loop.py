"""A deepscope-style loop run by test_distributed.py under torchrun (and alone, to compare).

usage: python ddp_loop.py OUT_DIR STEPS [KILL_AT]
"""

import sys

import torch
import torch.nn.functional as F

from deepscope.nets import build_net
from deepscope.train import Run
from deepscope.train.distributed import all_reduce_mean, init_distributed, shard, unwrap, wrap
from deepscope.train.rng import fork_seeded


def main(out: str, steps: int, kill_at: int | None) -> None:
    torch.set_num_threads(1)
    dist, dev = init_distributed("cpu")
    run = Run(out, config={"steps": steps}, seed=0, device=dev, progress=False)
    g = run.generator("data")
    x = torch.randn(256, 40, generator=torch.Generator().manual_seed(1))
    y = (x[:, :5].sum(1) > 0).long()
    with fork_seeded(run.generator("model")):
        net = build_net("mlp", input_shape=(40,), num_classes=2, hidden=(32, 32))
    model = wrap(net, dist)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    start = run.restore(model=net, opt=opt)["step"]
    for step in range(start + 1, steps + 1):
        idx = shard(torch.randperm(256, generator=g)[:64], dist)  # same global batch everywhere
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log(step, loss=float(all_reduce_mean(loss.detach(), dist)))
        if step % 5 == 0:
            run.save(step, model=net, opt=opt)
        if kill_at is not None and step == kill_at:
            raise SystemExit(3)
    if dist.is_main:
        torch.save({k: v.clone() for k, v in unwrap(model).state_dict().items()}, f"{out}/final.pt")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
