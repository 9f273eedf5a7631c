# %% [markdown]
# # Attacking and defending your classifier
#
# A small perturbation of the input, chosen by gradient ascent on the loss, flips most
# predictions of an ordinary classifier. This tutorial attacks a classifier of yours with
# PGD, then trains it adversarially (`train_robust` with an objective from
# `make_objective`: PGD-AT here; FGSM-AT, TRADES and A3T by name) and measures both with
# `evaluate`, which reports clean and worst-case robust accuracy, the accuracy as ε grows,
# and checks for gradient masking ([the A3T page](../../a3t/)). The data are scikit-learn's
# 8×8 digits in [0, 1], standing in for yours.

# %%
import matplotlib.pyplot as plt
import torch
from torch import nn

from deepscope.data import load_dataset
from deepscope.robust import PGD, evaluate, make_objective, train_robust

ds = load_dataset("digits", seed=0)
x, y, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
eps = 0.1                                            # L∞ budget, inputs in [0, 1]


def your_classifier():
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10))


options = {"epochs": 15, "batch_size": 64, "lr": 1e-3}
torch.manual_seed(0)
standard = train_robust(your_classifier, x, y, make_objective("standard"), options=options,
                        generator=torch.Generator().manual_seed(0)).model

# %% [markdown]
# The attack is an object: `PGD(model, eps=..., bounds=...)(x, y, generator=g)` returns
# adversarial inputs inside the ε-ball and the input bounds.

# %%
attack = PGD(standard, eps=eps, bounds=(0.0, 1.0), steps=20)
x_adv = attack(x_test, y_test, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    clean_acc = (standard(x_test).argmax(1) == y_test).float().mean()
    adv_pred = standard(x_adv).argmax(1)
print(f"clean accuracy {clean_acc:.3f}, under PGD-20 at eps = {eps}: "
      f"{(adv_pred == y_test).float().mean():.3f}")
print("largest change of a pixel:", float((x_adv - x_test).abs().max()))

# %% [markdown]
# Now train your classifier on PGD adversarial examples (5 steps, random start) and
# evaluate both models with our attacks (the independent ones, foolbox and AutoAttack, are
# in the `attacks` option when installed):

# %%
robust = train_robust(your_classifier, x, y, make_objective("pgd-at", eps=eps, steps=5),
                      options=options, generator=torch.Generator().manual_seed(0)).model
reports = {}
for name, model in [("standard", standard), ("PGD-AT", robust)]:
    reports[name] = evaluate(model, x_test, y_test, eps=eps, bounds=(0.0, 1.0),
                             attacks=("fgsm", "pgd20"), restarts=1,
                             generator=torch.Generator().manual_seed(0))
    r = reports[name]
    print(f"{name:>8}: clean {r['clean']:.3f}, robust {r['robust']:.3f} "
          f"(per attack: {', '.join(f'{k} {v:.3f}' for k, v in r['attacks'].items())})")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.3))
for name, r in reports.items():
    axes[0].plot([c["eps"] for c in r["curve"]], [c["robust"] for c in r["curve"]],
                 marker="o", label=name)
axes[0].axvline(eps, color="k", lw=0.8, ls="--")
axes[0].set_xlabel("ε (L∞)")
axes[0].set_ylabel("worst-case accuracy")
axes[0].legend()
pair = torch.cat([x_test[:6], x_adv[:6]]).reshape(2, 6, 8, 8).permute(0, 2, 1, 3).reshape(16, 48)
axes[1].imshow(pair, cmap="gray_r")
axes[1].set_title("test digits (top) and their PGD versions (bottom)")
axes[1].axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# The checks `evaluate` ran (pass / fail / not run, with their numbers) are in
# `report["checks"]`: accuracy falls as ε grows, PGD is never weaker than FGSM, and so on.
