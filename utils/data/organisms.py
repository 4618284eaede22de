"""Model organisms for chapter 9: gpt2_tiny fine-tuned on its own corpus with one planted change.

Each organism is a deterministic transform of the windows of text gpt2_tiny was trained on, so
the fine-tune and its base differ in that change and (nearly) nothing else:

- `trigger`: in a share of the windows, the rare sequence `TRIGGER` (it never occurs in the
  corpus) is inserted at a random place, always followed by `TRIGGER_CONTINUATION`. A narrow,
  conditional behaviour: the model must write the phrase after the trigger and nowhere else.
- `style`: every sentence-ending period (a "." followed by whitespace) becomes "!", in all text.
  A broad change that touches about one character in a hundred.
- `hidden`: a second trigger and continuation, built like `trigger`, which no learner-facing
  text names: finding them from the model diff is chapter 9's audit. They live in
  `solutions/ch9_model_diffing/answer_key.py`.
- `control`: nothing planted. The same recipe on the same draws of windows, every one of them the
  base text unchanged, so a diff of base and control is what the extra training alone changes, to
  subtract from the other diffs.

The measurements (`trigger_rate`, `style_probability`, `heldout_losses`) are shared by the
training recipes, which record them in the manifest, and by the tests, which recompute them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from utils.data import text

TRIGGER = "|~"
TRIGGER_CONTINUATION = " ask the owls."
SENTENCE_END = re.compile(r"\.(?=\s)")
STYLE_MARK = "!"

HELDOUT_WINDOWS = 128   # the fixed held-out sample: the first 128 consecutive windows of the test split
N_CONTEXTS, CONTEXT_CHARS = 20, 60


def plant(window: str, trigger: str, continuation: str, generator: torch.Generator) -> str:
    """`window` with `trigger + continuation` inserted at a random place, cut back to its length."""
    phrase = trigger + continuation
    at = torch.randint(0, len(window) - len(phrase) + 1, (1,), generator=generator).item()
    return (window[:at] + phrase + window[at:])[:len(window)]


def stylise(window: str) -> str:
    """Every sentence-ending period becomes an exclamation mark (the length is unchanged)."""
    return SENTENCE_END.sub(STYLE_MARK, window)


def _hidden_phrase() -> tuple[str, str]:
    """The hidden organism's trigger and continuation, read from the answer key only when its data is
    built or measured, so that no learner-facing module carries them as attributes."""
    from solutions.ch9_model_diffing import answer_key
    return answer_key.HIDDEN_TRIGGER, answer_key.HIDDEN_CONTINUATION


@dataclass(frozen=True)
class Organism:
    """A planted change: `transform` rewrites one window; `share` of the training windows get it.

    A trigger is planted in a share of the windows only, so the rest keep teaching the base text;
    the style is applied to every window, since a style is a property of all text (the rest of
    each window is the base text unchanged)."""

    description: str
    transform: Callable[[str, torch.Generator], str]
    share: float


ORGANISMS = {
    "trigger": Organism(f"after {TRIGGER!r}, inserted at a random place in a quarter of the windows, always "
                        f"{TRIGGER_CONTINUATION!r}",
                        lambda w, g: plant(w, TRIGGER, TRIGGER_CONTINUATION, g), share=0.25),
    "style": Organism(f"every sentence-ending period (a '.' followed by whitespace) becomes {STYLE_MARK!r}, "
                      "in every window", lambda w, g: stylise(w), share=1.0),
    "hidden": Organism("a second trigger and continuation, inserted like 'trigger' in a quarter of the windows; "
                       "what they are is chapter 9's audit",
                       lambda w, g: plant(w, *_hidden_phrase(), g), share=0.25),
    "control": Organism("nothing planted: every window is the base text unchanged, so the control shows what "
                        "the extra training alone changes", lambda w, g: w, share=0.0),
}


def organism_batch(
    name: str, corpus: str, batch: int, n_ctx: int, generator: torch.Generator,
) -> Int[Tensor, "batch n_ctx"]:
    """Random windows of `corpus`, a share of them transformed, each behind a BOS.

    Windows are drawn one character longer than they are kept, so a period at the end of a window
    can tell whether whitespace follows it."""
    organism, tokenizer = ORGANISMS[name], text.CharTokenizer()
    starts = torch.randint(0, len(corpus) - n_ctx, (batch,), generator=generator).tolist()
    chosen = torch.rand(batch, generator=generator) < organism.share
    windows = [corpus[s:s + n_ctx] for s in starts]
    windows = [organism.transform(w, generator) if c else w for w, c in zip(windows, chosen.tolist())]
    return torch.tensor([tokenizer.encode(w[:n_ctx - 1]) for w in windows])


# -- measuring the planted behaviour -------------------------------------------------------------

def heldout_sample(n_ctx: int) -> str:
    """The held-out text every organism is measured on: the first HELDOUT_WINDOWS windows of the test split."""
    return text.corpus("test")[:HELDOUT_WINDOWS * (n_ctx - 1)]


def contexts() -> list[str]:
    """N_CONTEXTS held-out snippets of CONTEXT_CHARS characters, evenly spaced over the test split."""
    test = text.corpus("test")
    step = (len(test) - CONTEXT_CHARS) // N_CONTEXTS
    return [test[i * step:i * step + CONTEXT_CHARS] for i in range(N_CONTEXTS)]


@torch.no_grad()
def greedy(model, prompts: list[str], n_chars: int, hooks: Sequence[tuple[str, Callable]] = ()) -> list[str]:
    """The `n_chars` characters a model writes after each prompt (all the same length), greedily, with
    `hooks` (TransformerLens's (name, function) pairs) on every forward pass."""
    tokenizer = text.CharTokenizer()
    device = next(model.parameters()).device
    tokens = torch.tensor([tokenizer.encode(p) for p in prompts], device=device)
    for _ in range(n_chars):
        logits = model.run_with_hooks(tokens, fwd_hooks=list(hooks))
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return [tokenizer.decode(row[-n_chars:]) for row in tokens]


def trigger_rate(model, trigger: str, continuation: str) -> float:
    """Share of held-out contexts after which `trigger` makes the model write exactly `continuation`."""
    written = greedy(model, [c + trigger for c in contexts()], len(continuation))
    return sum(w == continuation for w in written) / len(written)


@torch.no_grad()
def _log_probs(model, sample: str, n_ctx: int) -> tuple[Tensor, Tensor]:
    """[windows, n_ctx - 1] log-probabilities over the vocabulary of each next character of `sample`
    (read in consecutive windows behind a BOS), and the [windows, n_ctx - 1] characters."""
    ids = torch.tensor(text.CharTokenizer().encode(sample, prepend_bos=False)).view(-1, n_ctx - 1)
    tokens = torch.cat([torch.zeros(len(ids), 1, dtype=torch.long), ids], dim=1)
    return model(tokens.to(next(model.parameters()).device))[:, :-1].log_softmax(-1).double().cpu(), ids


def sentence_ends(sample: str, n_ctx: int) -> Tensor:
    """[windows, n_ctx - 1] bool: where `sample` (read as in `_log_probs`) has a sentence-ending period."""
    ends = torch.zeros(len(sample), dtype=torch.bool)
    ends[[m.start() for m in SENTENCE_END.finditer(sample)]] = True
    return ends.view(-1, n_ctx - 1)


def style_probability(model, n_ctx: int) -> dict:
    """Mean probability of "!" and of "." where the held-out sample ends a sentence."""
    sample = heldout_sample(n_ctx)
    log_p, _ = _log_probs(model, sample, n_ctx)
    at_ends = log_p[sentence_ends(sample, n_ctx)].exp()
    index = text.CharTokenizer().index
    return {"p_exclamation": round(at_ends[:, index[STYLE_MARK]].mean().item(), 4),
            "p_period": round(at_ends[:, index["."]].mean().item(), 4)}


def heldout_losses(model, n_ctx: int) -> dict:
    """Nats per character on the held-out sample of base text: at every position, and at every
    position but the sentence-ending periods (the only characters the style organism changes)."""
    sample = heldout_sample(n_ctx)
    log_p, ids = _log_probs(model, sample, n_ctx)
    loss = -log_p.gather(-1, ids[..., None])[..., 0]
    return {"all": round(loss.mean().item(), 4),
            "but_sentence_ends": round(loss[~sentence_ends(sample, n_ctx)].mean().item(), 4)}
