# %% [markdown]
# # Lazy vs feature learning of your model
#
# Scale a network's output by α and its loss by 1/α² (Chizat & Bach): at large α the
# parameters barely move and the network trains like its linearisation, the *lazy* regime;
# at α = 1 it learns features. `AlphaScaled(model, alpha)` wraps any `nn.Module` of yours
# (it is zero at initialisation for every α), and `train_alpha` trains it by SGD, recording
# every example's loss and correctness each time the training loss reaches a rung of a
# ladder, so the two regimes are compared at equal training loss, not at equal time
# (George, Lajoie & Baratin; [the system page](../../lazy_vs_hasty/)).

# %%
import copy

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from deepscope.dynamics import AlphaScaled, LossLadder, ladder_levels, learning_times, train_alpha

torch.manual_seed(0)
# "Your" data: 4 classes, 30-D, a nonlinear rule; "your" model: any module.
x = torch.randn(800, 30)
y = (x[:, 0] * x[:, 1] > 0).long() * 2 + (x[:, 2] + 0.5 * x[:, 3].abs() > 0.5).long()
net = nn.Sequential(nn.Linear(30, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                    nn.Linear(256, 4))

results, ladders = {}, {}
for alpha in (1.0, 100.0):
    model = AlphaScaled(copy.deepcopy(net), alpha)       # the same initial network for both
    ladders[alpha] = LossLadder(ladder_levels(4, min_loss=0.3), window=8)   # 8 batches an epoch
    results[alpha] = train_alpha(
        model, x, y, ladder=ladders[alpha], linearity_x=x[:128], kernel_x=x[:32],
        options={"epochs": 60, "batch_size": 100, "lr": 0.5},
        generator=torch.Generator().manual_seed(0))
    last = [h for h in results[alpha].history if "rung" in h][-1]    # rung lines; epoch lines too
    print(f"alpha = {alpha:5.0f}: rung {last['rung']} (loss {last['train_loss']:.3f}) at step "
          f"{last['step']}, probe accuracy {last['probe_acc']:.3f}")

# %% [markdown]
# A history line per rung (and one per epoch). The two linearity probes (logged every 10 rungs) show how far
# each regime is from its linearisation: the fraction of ReLUs whose sign is unchanged since
# initialisation and the alignment (CKA) of the tangent kernel with its initial value.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
for alpha, res in results.items():
    probes = [h for h in res.history if "sign_agreement" in h]
    label = f"α = {alpha:g}"
    axes[0].plot([h["train_loss"] for h in probes], [h["sign_agreement"] for h in probes],
                 marker="o", label=label)
    axes[1].plot([h["train_loss"] for h in probes], [h["kernel_alignment"] for h in probes],
                 marker="o", label=label)
for ax, title in zip(axes[:2], ["ReLU signs unchanged", "tangent kernel vs initial (CKA)"]):
    ax.invert_xaxis()
    ax.set_xlabel("training loss (decreasing →)")
    ax.set_title(title)
    ax.legend()

# Which examples each regime learns first: the rung after which an example stays correct.
t_feature = learning_times(ladders[1.0].stack("correct"))
t_lazy = learning_times(ladders[100.0].stack("correct"))
both = np.isfinite(t_feature) & np.isfinite(t_lazy)
jitter = np.random.default_rng(0).uniform(-0.3, 0.3, size=(2, both.sum()))
axes[2].scatter(t_lazy[both] + jitter[0], t_feature[both] + jitter[1], s=4, alpha=0.5)
axes[2].set_xlabel("learning time, α = 100 (rung)")
axes[2].set_ylabel("learning time, α = 1 (rung)")
axes[2].set_title("per-example learning times")
plt.tight_layout()
plt.show()

# %% [markdown]
# At α = 100 the ReLU signs and the tangent kernel stay where they started (lazy); at α = 1
# they move (feature learning), and the order in which examples are learned differs. The
# paper's measures of that difference (group gaps between easy and hard examples, the
# rank correlation of learning times) are in
# [`deepscope.dynamics.ladder`](../../api/dynamics/#deepscope.dynamics.ladder).
