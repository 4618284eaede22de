"""Plumbing for the sparse autoencoders of Chapter 3: initialisation, a training loop,
activation collection and a latent dashboard.

The learner writes the SAE itself (encode, decode, losses, resampling); these helpers only
wire the learner's functions together. Parameters are a dict of plain tensors with a leading
instance axis and the latent axis last (see solutions/ch3_sparse_autoencoders).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

PARAM_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")


def init_sae(n_instances: int, d_in: int, d_sae: int, generator: torch.Generator,
             device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Random unit-norm decoder columns, encoder initialised to the decoder's transpose, zero biases."""
    W_dec = torch.randn(n_instances, d_in, d_sae, generator=generator)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    params = {"W_enc": W_dec.clone(), "b_enc": torch.zeros(n_instances, d_sae),
              "W_dec": W_dec, "b_dec": torch.zeros(n_instances, d_in)}
    return {k: v.to(device).requires_grad_(True) for k, v in params.items()}


def train_sae(
    params: dict[str, Tensor],
    batch_fn: Callable[[int], Tensor],
    step_fn: Callable[[dict[str, Tensor], Tensor], tuple[Tensor, Tensor, Tensor]],
    normalise: Callable[[Tensor], Tensor],
    *,
    steps: int,
    lr: float = 1e-3,
    resample: Callable | None = None,
    resample_every: int = 0,
    resample_until: int | None = None,
    dead_fn: Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
    desc: str = "training SAE",
    log_every: int = 50,
) -> dict:
    """Adam on the SAE parameters.

    `batch_fn(step)` returns inputs [batch, inst, d_in]; `step_fn(params, x)` returns
    (loss per instance [inst], latent activations [batch, inst, lat], reconstruction x_hat).
    After every step the decoder columns are put back to unit norm with `normalise`.

    With `resample`, every `resample_every` steps (until `resample_until`) the latents that
    `dead_fn` flags as dead over the window since the last check are re-initialised with
    `resample(x, x_hat, dead, W_enc, b_enc, W_dec, generator)` on a fresh batch, and Adam's
    moments for those latents are reset. Returns the loss history, the dead-latent count at each
    check and the throughput in activations (inputs) per second.
    """
    optimiser = torch.optim.Adam([params[k] for k in PARAM_NAMES], lr=lr)
    history: list[float] = []
    dead_counts: list[list[int]] = []
    window: list[Tensor] = []
    n_seen, start = 0, time.perf_counter()
    with torch.enable_grad():
        bar = tqdm(range(steps), desc=desc, mininterval=1.0)
        for step in bar:
            x = batch_fn(step)
            loss, acts, _ = step_fn(params, x)
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimiser.step()
            with torch.no_grad():
                params["W_dec"].copy_(normalise(params["W_dec"]))
            n_seen += x.shape[0]
            if resample is not None:
                window.append((acts.detach() > 0).any(dim=0, keepdim=True).float())
                if resample_every and (step + 1) % resample_every == 0 and \
                        (resample_until is None or step + 1 <= resample_until):
                    dead = dead_fn(torch.cat(window))
                    dead_counts.append(dead.sum(-1).tolist())
                    window = []
                    if dead.any():
                        _resample(params, optimiser, batch_fn, step_fn, resample, dead, generator, step)
            if step % log_every == 0 or step == steps - 1:
                history.append(loss.sum().item())
                bar.set_postfix(loss=f"{history[-1]:.4g}", refresh=False)
    seconds = time.perf_counter() - start
    for p in params.values():
        p.requires_grad_(False)
    return {"history": history, "dead_counts": dead_counts, "seconds": seconds,
            "activations_per_second": n_seen / seconds}


def _resample(params, optimiser, batch_fn, step_fn, resample, dead, generator, step):
    with torch.no_grad():
        x = torch.cat([batch_fn(step + 10_000_000 + i) for i in range(4)])
        _, _, x_hat = step_fn(params, x)
        W_enc, b_enc, W_dec = resample(x, x_hat, dead, params["W_enc"].detach(), params["b_enc"].detach(),
                                       params["W_dec"].detach(), generator)
        for name, new in (("W_enc", W_enc), ("b_enc", b_enc), ("W_dec", W_dec)):
            params[name].copy_(new)
            state = optimiser.state.get(params[name], {})
            mask = dead if name == "b_enc" else dead[:, None, :]
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key].masked_fill_(mask.expand_as(state[key]), 0.0)


@torch.no_grad()
def collect_activations(model, tokens: Tensor, hook_name: str, batch_size: int = 64) -> Tensor:
    """The activation at `hook_name` for every token of `tokens` [n, pos]: [n, pos, d]."""
    out = []
    for i in range(0, len(tokens), batch_size):
        _, cache = model.run_with_cache(tokens[i:i + batch_size], names_filter=lambda n: n == hook_name)
        out.append(cache[hook_name].detach())
    return torch.cat(out)


# -- reading latents ------------------------------------------------------------------------

def highlight_html(text_tokens: Sequence[str], values: Sequence[float], centre: int, vmax: float,
                   width: int = 24) -> str:
    """One context window as HTML: each character shaded by the latent's activation,
    the max-activating one boxed."""
    lo, hi = max(0, centre - width), min(len(text_tokens), centre + 4)
    spans = []
    for i in range(lo, hi):
        ch = text_tokens[i].replace("\n", "\u21b5")
        alpha = 0.0 if vmax <= 0 else max(0.0, min(1.0, values[i] / vmax))
        border = "border:1px solid #000;" if i == centre else ""
        spans.append(f'<span style="background:rgba(255,120,0,{alpha:.2f});{border}'
                      f'font-family:monospace;white-space:pre">{html.escape(ch)}</span>')
    return "".join(spans)


def latent_dashboard(latent: int, examples_html: Sequence[str], top_tokens: Sequence[tuple[str, float]],
                     bottom_tokens: Sequence[tuple[str, float]], density: float, acts: Tensor):
    """An HTML dashboard for one latent: activation density, histogram, logit effects, examples."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Histogram(x=acts[acts > 0].cpu().numpy(), nbinsx=40))
    fig.update_layout(title=f"latent {latent}: non-zero activations", width=420, height=260,
                      margin=dict(l=20, r=20, t=40, b=20))

    def table(rows):
        return "".join(f"<tr><td style='font-family:monospace'>{html.escape(repr(t))}</td>"
                       f"<td>{v:+.2f}</td></tr>" for t, v in rows)

    page = (f"<h4>Latent {latent}</h4><p>fires on {100 * density:.2f}% of tokens</p>"
            f"<div style='display:flex;gap:24px'><table><tr><th>promoted</th><th></th></tr>{table(top_tokens)}</table>"
            f"<table><tr><th>suppressed</th><th></th></tr>{table(bottom_tokens)}</table></div>"
            "<p><b>Max-activating contexts</b></p>" + "<br>".join(examples_html))
    return fig, page
