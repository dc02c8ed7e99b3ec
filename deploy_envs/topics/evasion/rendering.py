"""Pictures of attacks: clean input, perturbation and adversarial input side by side."""
from __future__ import annotations

import numpy as np


def render_attack(clean: np.ndarray, delta: np.ndarray, *, true_label: int, adv_label: int, title: str = "", scale: float = 1.0) -> np.ndarray:
    """Return an RGB ``uint8`` array with three panels (clean, perturbation, adversarial) and labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def img(a: np.ndarray) -> np.ndarray:
        return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))

    fig = Figure(figsize=(6, 2.4), dpi=80)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    adv = np.clip(clean + delta, 0, 1)
    axes[0].imshow(img(clean), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"clean: {true_label}")
    axes[1].imshow(img(delta), cmap="seismic", vmin=-max(scale, 1e-6), vmax=max(scale, 1e-6))
    axes[1].set_title("perturbation")
    axes[2].imshow(img(adv), cmap="gray", vmin=0, vmax=1)
    axes[2].set_title(f"adversarial: {adv_label}", color="red" if adv_label != true_label else "black")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
