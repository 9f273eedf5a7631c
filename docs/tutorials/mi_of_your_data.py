# %% [markdown]
# # Mutual information between two arrays of yours
#
# `MINE().fit(x, y)` estimates I(X;Y) in nats from paired rows, with scikit-learn
# conventions: a held-out estimate `mi_`, its 95% bootstrap interval `ci_` and the training
# curve `history_`. Here "your" arrays are made up: a noisy nonlinear relation between a
# 3-D `x` and a 2-D `y`, at several noise levels. Replace them by your own (N, dx) and
# (N, dy) arrays, NumPy or torch. Background: [MINE](../../mine/); every option:
# [`MINE`](../../api/mi/#deepscope.mi.estimator.MINE).

# %%
import matplotlib.pyplot as plt
import numpy as np

from deepscope.mi import MINE, ksg

rng = np.random.default_rng(0)
n = 3000
x = rng.normal(size=(n, 3))


def your_y(noise):
    """A made-up measurement of x: nonlinear, two columns, Gaussian noise."""
    signal = np.stack([np.tanh(x[:, 0] + x[:, 1]), np.sin(x[:, 2])], axis=1)
    return signal + noise * rng.normal(size=(n, 2))


y = your_y(0.3)
est = MINE(random_state=0).fit(x, y)
print(f"I(X;Y) = {est.mi_:.3f} nats, 95% interval {est.ci_[0]:.3f} .. {est.ci_[1]:.3f}")
print(f"        = {est.mi_bits_:.3f} bits; test rows: {est.n_test_}")

# %% [markdown]
# The estimate is read on test rows the critic never saw (chosen on a validation split), so
# it does not grow with training time. Its training curve:

# %%
steps = [h["step"] for h in est.history_]
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(steps, [h["train"] for h in est.history_], label="train bound")
ax.plot(steps, [h["val"] for h in est.history_], label="validation bound")
ax.axhline(est.mi_, color="k", ls="--", lw=1, label="test estimate")
ax.set_xlabel("step")
ax.set_ylabel("nats")
ax.legend()
plt.show()

# %% [markdown]
# Less noise, more information. MINE against the k-nearest-neighbour estimator (KSG) on the
# same arrays:

# %%
noises = [0.1, 0.3, 1.0, 3.0]
mine, knn = [], []
for s in noises:
    y = your_y(s)
    mine.append(MINE(random_state=0).fit(x, y))
    knn.append(ksg(x, y, k=5))
fig, ax = plt.subplots(figsize=(5, 3))
ax.errorbar(noises, [e.mi_ for e in mine],
            yerr=np.array([[e.mi_ - e.ci_[0], e.ci_[1] - e.mi_] for e in mine]).T,
            marker="o", label="MINE (95% interval)")
ax.plot(noises, knn, marker="s", label="KSG, k = 5")
ax.set_xscale("log")
ax.set_xlabel("noise std")
ax.set_ylabel("I(X;Y), nats")
ax.legend()
plt.show()
