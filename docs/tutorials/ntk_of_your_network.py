# %% [markdown]
# # The tangent kernel and alignment of your network
#
# The empirical neural tangent kernel of a network `f` between examples `x` and `x'` is
# `K(x, x') = J(x) J(x')ᵀ`, the inner products of the parameter gradients of the outputs.
# `empirical_ntk(model, x)` computes it for any `nn.Module`; `kernel_alignment(K, y)` says
# how much of it points along the labels (1: the kernel is the label kernel, 0: orthogonal
# to it). Neural feature alignment (Baratin et al., [the system page](../../feature_alignment/))
# is the observation that training raises this alignment. Here: your own network and data,
# your own training loop, and the kernel measured along the way.

# %%
import matplotlib.pyplot as plt
import torch
from torch import nn

from deepscope.dynamics import empirical_ntk, kernel_alignment

torch.manual_seed(0)
# "Your" data: 3 classes of 20-D points around random centres; "your" network: any module.
centres = 2.0 * torch.randn(3, 20)
y = torch.randint(3, (600,))
x = centres[y] + 2.0 * torch.randn(600, 20)
model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                      nn.Linear(128, 3))

probe = torch.argsort(y[:90], stable=True)          # 90 probe examples, sorted by class
xp, yp = x[probe], y[probe]
k = empirical_ntk(model, xp, mode="trace")          # (90, 90): summed over the 3 outputs
print(k.shape, "alignment at initialisation:", float(kernel_alignment(k, yp, n_classes=3)))

# %% [markdown]
# `mode="full"` gives the `(N, N, O, O)` kernel, `mode="diagonal"` its `(N, N, O)` output
# diagonal, `per_layer=True` one kernel per parameter tensor. Now train with your own loop
# and measure the alignment every few steps:

# %%
opt = torch.optim.SGD(model.parameters(), lr=0.05)
steps, align, acc = [], [], []
kernels = {0: k}
for step in range(301):
    if step % 30 == 0:
        k = empirical_ntk(model, xp, mode="trace")
        steps.append(step)
        align.append(float(kernel_alignment(k, yp, n_classes=3)))
        acc.append(float((model(x).argmax(1) == y).float().mean()))
    idx = torch.randint(600, (64,))
    loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
kernels[300] = k
print("alignment after 300 steps:", align[-1])

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
axes[0].plot(steps, align, marker="o", label="kernel-label alignment")
axes[0].plot(steps, acc, marker="s", label="training accuracy")
axes[0].set_xlabel("SGD step")
axes[0].legend()
for ax, (s, kk) in zip(axes[1:], kernels.items()):
    ax.imshow(kk.detach().numpy(), cmap="viridis")
    ax.set_title(f"tangent kernel, step {s}\n(probe examples sorted by class)")
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# The block structure that appears is the kernel aligning with the classes. For the
# measures the paper logs during training (per-layer kernels, centred alignment on probe
# sets, the complexity measure), see
# [`train_feature_alignment`](../../api/dynamics/#deepscope.dynamics.feature_alignment.train_feature_alignment)
# and [`AlignmentTracker`](../../api/dynamics/#deepscope.dynamics.ntk_tracker.AlignmentTracker).
