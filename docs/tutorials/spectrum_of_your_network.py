# %% [markdown]
# # The spectrum of what your network learned
#
# Spectral bias (Rahaman et al., [the system page](../../spectral/)): a network fitting a sum
# of sinusoids learns the low frequencies first. `fourier_spectrum(values, freqs=...)` reads
# the amplitude of each integer frequency from a function sampled on a uniform grid over one
# period, so you can watch it in any network of yours: evaluate the network on the grid
# during training and take the spectrum.

# %%
import math

import matplotlib.pyplot as plt
import torch
from torch import nn

from deepscope.dynamics import fourier_spectrum

torch.manual_seed(0)
freqs = [5, 10, 15, 20, 25]
z = torch.arange(200, dtype=torch.float32) / 200                     # one period, 200 points
target = sum(torch.sin(2 * math.pi * k * z + k) for k in freqs)      # amplitude 1 at each
print("target spectrum:", fourier_spectrum(target, freqs=freqs).round(decimals=3))

# "Your" network: any module mapping (N, 1) -> (N, 1).
model = nn.Sequential(nn.Linear(1, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                      nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1))

# %% [markdown]
# Full-batch Adam on the 200 grid points; every 50 steps, the learned function's amplitude
# at each target frequency, divided by the target's:

# %%
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
steps, spectra = [], []
for step in range(2001):
    pred = model(z[:, None]).squeeze(1)
    if step % 25 == 0:
        steps.append(step)
        spectra.append(fourier_spectrum(pred.detach(), freqs=freqs))
    loss = ((pred - target) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
spectra = torch.stack(spectra)                                        # (T, F), target amplitude 1
print(f"final loss {loss.item():.4f}; last spectrum {spectra[-1].round(decimals=2)}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
im = axes[0].imshow(spectra.T.numpy(), aspect="auto", origin="lower", vmin=0, vmax=1,
                    extent=(0, steps[-1], -0.5, len(freqs) - 0.5), cmap="viridis")
axes[0].set_yticks(range(len(freqs)), [str(k) for k in freqs])
axes[0].set_xlabel("step")
axes[0].set_ylabel("frequency")
axes[0].set_title("learned amplitude / target amplitude")
fig.colorbar(im, ax=axes[0])
axes[1].plot(z, target, lw=1, label="target")
axes[1].plot(z, model(z[:, None]).squeeze(1).detach(), lw=1, label=f"network, step {steps[-1]}")
axes[1].set_xlabel("z")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The rows light up from the bottom: frequency 5 is learned first, 25 last. For data that are
# not a 1-D grid (a manifold, images), the spectrum in the eigenbasis of a kernel on your
# inputs is [`kernel_eigenbasis`](../../api/dynamics/#deepscope.dynamics.spectral.kernel_eigenbasis)
# with [`eigenbasis_spectrum`](../../api/dynamics/#deepscope.dynamics.spectral.eigenbasis_spectrum),
# and the sensitivity of a trained network to perturbations of each frequency is
# [`perturbation_spectrum`](../../api/dynamics/#deepscope.dynamics.spectral.perturbation_spectrum).
