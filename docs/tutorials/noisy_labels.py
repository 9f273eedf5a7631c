# %% [markdown]
# # Training on your noisy labels
#
# Labels collected by people or by heuristics are wrong for some examples, and a network
# trained by cross-entropy memorises them. CrossSplit (Kim et al., [the system
# page](../../crosssplit/)) trains two networks on disjoint halves of the data, each
# correcting the other's labels and using the other half as unlabeled data. Here: labels of
# yours with 40% of them replaced at random (`symmetric_noise`, which also returns the
# transition matrix that produced them), your own `nn.Module`, and cross-entropy vs
# CrossSplit on the same noisy labels. The data are scikit-learn's 8×8 digits, standing in
# for yours (any `(N, ...)` float tensor and `(N,)` integer labels).

# %%
import matplotlib.pyplot as plt
import torch
from torch import nn

from deepscope.data import load_dataset
from deepscope.data.noise import symmetric_noise
from deepscope.robust import train_ce, train_crosssplit

ds = load_dataset("digits", seed=0)
x, y, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
noisy = symmetric_noise(y, 0.4, num_classes=10, generator=torch.Generator().manual_seed(0))
print(f"{noisy.corrupted.float().mean():.1%} of {len(y)} training labels are wrong")


class YourNet(nn.Module):
    """Any classifier; a ``features`` submodule (input -> (N, D)) lets CrossSplit put its
    contrastive projection head on it (otherwise pass ``contrastive_weight=0``)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256),
                                      nn.ReLU())
        self.head = nn.Linear(256, 10)

    def forward(self, x):
        return self.head(self.features(x))


your_network = YourNet          # a function returning a new network: CrossSplit trains two


options = {"epochs": 60, "batch_size": 64, "lr": 0.05}

# %% [markdown]
# Both loops take the network as a name of a built-in one, your module, or a function
# returning one; `options` overrides the shared training knobs
# ([`TrainOptions`](../../api/train/#deepscope.train.loop.TrainOptions)); each returns a
# [`TrainResult`](../../api/train/#deepscope.train.loop.TrainResult) whose `history` has one
# line per epoch.

# %%
torch.manual_seed(0)
ce = train_ce(x, noisy.labels, num_classes=10, net=your_network, x_test=x_test, y_test=y_test,
              options=options, generator=torch.Generator().manual_seed(1))
cs = train_crosssplit(x, noisy.labels, num_classes=10, net=your_network, x_test=x_test,
                      y_test=y_test, y_true=y, warmup_epochs=10,
                      rampup_epochs=16,
                      options={**options, "batch_size": 128},
                      generator=torch.Generator().manual_seed(1))
for name, res in [("cross-entropy", ce), ("CrossSplit", cs)]:
    acc = (res.predict(x_test).argmax(1) == y_test).float().mean()
    best = max(h["test_acc"] for h in res.history if "test_acc" in h)
    print(f"{name:>13}: test accuracy {acc:.3f} after {options['epochs']} epochs "
          f"(best epoch: {best:.3f})")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.3))
for name, res in [("cross-entropy", ce), ("CrossSplit", cs)]:
    hist = [h for h in res.history if "test_acc" in h]
    axes[0].plot([h["epoch"] for h in hist], [h["test_acc"] for h in hist], label=name)
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("test accuracy")
axes[0].set_title("40% symmetric label noise")
axes[0].legend()
im = axes[1].imshow(noisy.transition.numpy(), cmap="Blues", vmin=0, vmax=1)
axes[1].set_xlabel("noisy label")
axes[1].set_ylabel("clean label")
axes[1].set_title("transition matrix of the noise")
fig.colorbar(im, ax=axes[1])
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the curves: a network trained by cross-entropy fits the wrong labels as training goes
# on, so its test accuracy falls from its best epoch, which you could not pick without clean
# labels; CrossSplit is built to resist that. This is one seed at toy scale; the measured
# comparison, with seeds and the paper's settings, is on [the system page](../../crosssplit/). Other methods by name (co-teaching, DivideMix, confident
# learning): [`train_noisy`](../../api/robust/#deepscope.robust.methods.train_noisy); other
# noise (asymmetric, instance-dependent):
# [`deepscope.data.noise`](../../api/data/#deepscope.data.noise).
