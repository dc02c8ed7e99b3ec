"""Pictures of attacks: clean input, perturbation and adversarial input side by side."""
from __future__ import annotations

from typing import Any

import numpy as np

from deploy_envs.core.rendering import image_of, no_ticks, sketch


def render_attack(owner: Any, clean: np.ndarray, delta: np.ndarray, *, true_label: int, adv_label: int, title: str = "",
                  scale: float = 1.0, key: str = "attack", clean_title: str | None = None, adv_title: str | None = None) -> np.ndarray:
    """Return an RGB ``uint8`` array with three panels (clean, perturbation, adversarial) and the
    victim's labels; drawn on ``owner``'s reused figure ``key``."""
    sk = sketch(owner, key, size=(480, 220), grid=(1, 3), margins={"left": 0.02, "right": 0.98, "bottom": 0.03, "top": 0.74, "wspace": 0.08})
    axes = sk.begin(title, fontsize=8)
    adv = np.clip(clean + delta, 0, 1)
    s = max(float(scale), 1e-6)
    axes[0].imshow(image_of(clean), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(clean_title or f"original: {true_label}", fontsize=9)
    axes[1].imshow(image_of(delta).mean(-1) if delta.ndim == 3 and delta.shape[0] > 1 else image_of(delta), cmap="seismic", vmin=-s, vmax=s)
    axes[1].set_title(f"perturbation (±{s:.3g})", fontsize=9)
    axes[2].imshow(image_of(adv), cmap="gray", vmin=0, vmax=1)
    fooled = adv_label != true_label
    axes[2].set_title(adv_title or f"adversarial: victim says {adv_label}", color="red" if fooled else "black", fontsize=9)
    no_ticks(*axes)
    return sk.finish()
