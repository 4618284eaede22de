"""Model diffing for Chapter 9: what a fine-tune changed, measured on gpt2_tiny and its organisms.

Every organism (utils.data.organisms) is gpt2_tiny trained a little further with one planted change, so
each method here can be scored against the truth:

- the baselines: how much each weight matrix moved, and the mean difference of the two models'
  residual streams on neutral text, read through the logit lens and added to the base as a steering
  vector (Minder et al. 2025, "Narrow finetuning leaves clearly readable traces");
- a crosscoder (utils.crosscoders) on both models' residual streams at `HOOK`, trained on the
  diffing data (`diffing_tokens`), whose latents are ranked by relative decoder norm and checked by
  latent scaling;
- the causal checks: remove a set of latents from the fine-tune, or add them to the base, while
  either model writes text, and count how often the planted phrase still (or now) follows its trigger.

All of this runs where the models are (CPU or CUDA); the crosscoders work on activations divided by a
per-model scale (`params["scale"]`), so that both models' residual streams have mean norm sqrt(d_model)
as in Minder et al.; `to_code_space` and `from_code_space` convert.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from utils import crosscoders
from utils.crosscoders import BASE, FINETUNE
from utils.data import organisms, text

HOOK = "blocks.0.hook_resid_post"   # gpt2_tiny's residual stream between its two blocks
N_CTX = 128
DIFF_WINDOWS = 512                   # per half: organism windows, then as many plain ones
DIFF_SEED = 1


# -- data ----------------------------------------------------------------------------------------------

def diffing_tokens(name: str, windows: int = DIFF_WINDOWS, seed: int = DIFF_SEED) -> Int[Tensor, "batch n_ctx"]:
    """The text a diff is computed on: `windows` windows of the organism's fine-tuning data (a quarter of
    them carrying its trigger; every one restyled for `style`), then `windows` windows of plain training
    text, each behind a BOS. Auditors in Marks et al. (2025) also had a sample of the training data."""
    generator = torch.Generator().manual_seed(seed)
    corpus = text.corpus("train")
    tuned = organisms.organism_batch(name, corpus, windows, N_CTX, generator)
    ids = torch.tensor(text.CharTokenizer().encode(corpus, prepend_bos=False))
    return torch.cat([tuned, text.text_batch(ids, windows, N_CTX, generator=generator)])


def neutral_tokens(windows: int = 64) -> Int[Tensor, "batch n_ctx"]:
    """The first `windows` consecutive windows of held-out text (no organism's change in them)."""
    ids = torch.tensor(text.CharTokenizer().encode(text.corpus("test"), prepend_bos=False))
    rows = ids[:windows * (N_CTX - 1)].view(windows, N_CTX - 1)
    return torch.cat([torch.zeros(windows, 1, dtype=torch.long), rows], dim=1)


def planted_mask(tokens: Int[Tensor, "batch pos"], phrase: str) -> Bool[Tensor, "batch pos"]:
    """True at every character of each occurrence of `phrase` (a trigger and its continuation), also where
    a window cuts the phrase short; BOS columns are False."""
    tokenizer = text.CharTokenizer()
    mask = torch.zeros(tokens.shape, dtype=torch.bool)
    opening = re.escape(phrase[:2])
    for row, ids in enumerate(tokens.tolist()):
        line = "".join(tokenizer.chars[i] for i in ids)   # BOS kept, so a character's index is its position
        for match in re.finditer(opening, line):
            tail = line[match.start():match.start() + len(phrase)]
            if phrase.startswith(tail):
                mask[row, match.start():match.start() + len(tail)] = True
    mask[:, 0] = False
    return mask


# -- activations ------------------------------------------------------------------------------------

@torch.no_grad()
def residual(model, tokens: Int[Tensor, "batch pos"], hook: str = HOOK, batch_size: int = 256
             ) -> Float[Tensor, "batch pos d"]:
    """One hook's activations for every token, on the model's device; the forward pass stops after the
    hook's block (a hook outside the blocks runs the whole model)."""
    device = next(model.parameters()).device
    block = re.match(r"blocks\.(\d+)\.", hook)
    stop = {"stop_at_layer": int(block.group(1)) + 1} if block else {}
    parts = []
    for i in range(0, len(tokens), batch_size):
        _, cache = model.run_with_cache(tokens[i:i + batch_size].to(device), names_filter=lambda n: n == hook, **stop)
        parts.append(cache[hook])
    return torch.cat(parts)


def paired_activations(base, finetune, tokens: Int[Tensor, "batch pos"], hook: str = HOOK
                       ) -> Float[Tensor, "n model d"]:
    """Both models' residual streams at `hook`, one row per non-BOS token, base first (the crosscoder's order)."""
    pair = torch.stack([residual(base, tokens, hook), residual(finetune, tokens, hook)], dim=2)
    return einops.rearrange(pair[:, 1:], "batch pos model d -> (batch pos) model d")


def activation_scale(x: Float[Tensor, "n model d"]) -> Float[Tensor, " model"]:
    """Each model's mean activation norm over sqrt(d): dividing by it gives both norm sqrt(d) on average."""
    return x.norm(dim=-1).mean(dim=0) / x.shape[-1] ** 0.5


def to_code_space(x: Float[Tensor, "n model d"], params: dict[str, Tensor]) -> Float[Tensor, "n model d"]:
    return x / params["scale"][:, None]


def from_code_space(x: Float[Tensor, "n model d"], params: dict[str, Tensor]) -> Float[Tensor, "n model d"]:
    return x * params["scale"][:, None]


@torch.no_grad()
def latent_codes(params: dict[str, Tensor], x: Float[Tensor, "n model d"], k: int, chunk: int = 8192
                 ) -> Float[Tensor, "n lat"]:
    """The crosscoder's inference-time code (its threshold, not the batch) of raw paired activations, in
    chunks, so that only the result is ever held at full size."""
    out = x.new_empty(len(x), params["W_enc"].shape[-1])
    for i in range(0, len(x), chunk):
        out[i:i + chunk] = crosscoders.encode(to_code_space(x[i:i + chunk], params), params, k, use_threshold=True)
    return out


# -- the baselines ----------------------------------------------------------------------------------

@torch.no_grad()
def weight_changes(base, finetune) -> dict[str, float]:
    """||W_ft - W_base||_F / ||W_base||_F for every weight matrix (biases and LayerNorm vectors left out)."""
    tuned = dict(finetune.named_parameters())
    return {name: ((tuned[name] - W).norm() / W.norm()).item()
            for name, W in base.named_parameters() if W.ndim >= 2}


@torch.no_grad()
def mean_difference(base, finetune, tokens: Int[Tensor, "batch pos"], hook: str = HOOK
                    ) -> Float[Tensor, " d"]:
    """The fine-tune's residual stream minus the base's at `hook`, averaged over every non-BOS token."""
    return (residual(finetune, tokens, hook) - residual(base, tokens, hook))[:, 1:].mean(dim=(0, 1))


@torch.no_grad()
def lens(model, direction: Float[Tensor, " d"], n: int = 10) -> list[tuple[str, float]]:
    """The characters a residual-stream direction promotes most, through the final LayerNorm's gain and
    the unembedding (the logit lens; the centring of LayerNorm applied to the direction, its scale not)."""
    centred = direction - direction.mean()
    logits = (centred * model.ln_final.w.detach()) @ model.W_U.detach()
    logits = logits - logits.mean()
    top = logits.topk(n)
    chars = text.CharTokenizer().decode(top.indices.tolist())
    return [(c, round(v, 3)) for c, v in zip(chars, top.values.tolist())]


def adding_hook(vector: Float[Tensor, " d"]) -> Callable:
    """A hook that adds `vector` to the activation at every position (without changing it in place)."""
    def hook(activation, hook=None):
        return activation + vector.to(activation.device)
    return hook


generate = organisms.greedy   # what a model writes greedily after each prompt, with hooks on every pass


def phrase_rate(written: Sequence[str], phrase: str) -> float:
    """Share of generations that contain `phrase` anywhere."""
    return sum(phrase in w for w in written) / len(written)


# -- the causal checks ------------------------------------------------------------------------------

def latent_edit_hook(params: dict[str, Tensor], k: int, latents: Sequence[int], partner: Callable[[Tensor], Tensor],
                     edited: int, sign: float) -> Callable:
    """A hook on model `edited` (BASE or FINETUNE) at HOOK that adds `sign` x what `latents` write into the
    fine-tune, minus what they write into the base, scaled to the edited model, wherever they fire.

    The code needs both models' activations on the same tokens: `partner(tokens)` returns the other
    model's. Removing from the fine-tune (sign -1) takes out the latents' fine-tune writes; adding to the
    base (sign +1) makes the base's stream carry what the fine-tune's does along them."""
    chosen = torch.as_tensor(list(latents), dtype=torch.long)
    tokens_box: dict[str, Tensor] = {}

    def hook(activation, hook=None):
        other = partner(tokens_box["tokens"])
        pair = torch.stack([other, activation] if edited == FINETUNE else [activation, other], dim=2)
        flat = einops.rearrange(pair, "batch pos model d -> (batch pos) model d")
        index = chosen.to(params["W_dec"].device)
        acts = latent_codes(params, flat, k)[:, index]
        W_dec = params["W_dec"][:, :, index]
        direction = W_dec[FINETUNE] - W_dec[BASE] if edited == BASE else W_dec[FINETUNE]
        writes = einops.einsum(acts, direction, "n lat, d lat -> n d") * params["scale"][edited]
        return activation + sign * writes.view_as(activation)

    hook.tokens = tokens_box
    return hook


def _phrase_rate_with(edited, trigger: str, continuation: str, make_hook: Callable[[], Callable]) -> float:
    """How often `edited` writes exactly `continuation` after `trigger` in the held-out contexts
    (organisms.contexts()), greedily, with a fresh hook at HOOK told each pass's tokens."""
    tokenizer = text.CharTokenizer()
    device = next(edited.parameters()).device
    tokens = torch.tensor([tokenizer.encode(c + trigger) for c in organisms.contexts()], device=device)
    hook = make_hook()
    for _ in range(len(continuation)):
        hook.tokens["tokens"] = tokens
        logits = edited.run_with_hooks(tokens, fwd_hooks=[(HOOK, hook)])
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    written = [tokenizer.decode(row[-len(continuation):]) for row in tokens.tolist()]
    return sum(w == continuation for w in written) / len(written)


@torch.no_grad()
def edited_phrase_rate(base, finetune, params: dict[str, Tensor], k: int, latents: Sequence[int], trigger: str,
                       continuation: str, edit: str) -> float:
    """How often `continuation` follows `trigger` in the held-out contexts when `latents` are removed from
    the fine-tune (edit="ablate") or added to the base (edit="induce")."""
    edited, other = (finetune, base) if edit == "ablate" else (base, finetune)
    side, sign = (FINETUNE, -1.0) if edit == "ablate" else (BASE, 1.0)
    return _phrase_rate_with(edited, trigger, continuation,
                             lambda: latent_edit_hook(params, k, latents, lambda t: residual(other, t), side, sign))


@torch.no_grad()
def swapped_stream_rate(receiver, donor, trigger: str, continuation: str) -> float:
    """The same rate for `receiver` run with `donor`'s whole residual stream at HOOK (every position):
    whether the receiver's later layers write the phrase from the donor's stream."""
    def make_hook() -> Callable:
        box: dict[str, Tensor] = {}

        def hook(activation, hook=None):
            return residual(donor, box["tokens"])
        hook.tokens = box
        return hook
    return _phrase_rate_with(receiver, trigger, continuation, make_hook)
