"""Train the course's models: `python -m utils.models.train NAME [NAME ...]` or `--all`.

Each recipe is a config plus a batch function; `train` is the one loop they
share, and the notebooks call it too (1.2 retrains the induction model live).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformer_lens import TransformerBridge

from utils.data import facts, induction, ioi, othello, text
from utils.models import build_model, save_model


def train(
    model: TransformerBridge,
    batch_fn: Callable[[torch.Generator], torch.Tensor],
    steps: int,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    seed: int = 0,
    progress: bool = True,
    loss_fn: Callable[[TransformerBridge, object], torch.Tensor] | None = None,
) -> list[float]:
    """Next-token training with AdamW; returns the loss at every step.

    With `loss_fn`, `batch_fn` may return anything and `loss_fn(model, batch)` computes the loss
    (the IOI model is trained only on its answer token)."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    bar = tqdm(range(steps), disable=not progress, desc="training")
    for step in bar:
        batch = batch_fn(generator)
        if loss_fn is None:
            loss = model(batch.to(device), return_type="loss")
        else:
            loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


@dataclass
class Recipe:
    config: dict
    batch_fn: Callable[[torch.Generator], torch.Tensor]
    steps: int
    lr: float
    weight_decay: float = 0.01
    notes: dict = field(default_factory=dict)
    loss_fn: Callable[[TransformerBridge, object], torch.Tensor] | None = None
    evaluate: Callable[[TransformerBridge], dict] | None = None   # held-out results, recorded in the manifest


# A vocabulary much larger than the context keeps chance repeats rare, so the copied segment is the
# only thing worth matching: with 64 tokens in 48 positions the induction heads blur (scores ~0.6).
ATTN_ONLY_2L = dict(d_model=64, d_head=16, n_heads=4, n_layers=2, n_ctx=48, d_vocab=256,
                    attn_only=True, normalization_type=None, seed=0)


def _induction_batch(generator: torch.Generator) -> torch.Tensor:
    return induction.copied_segment_batch(64, ATTN_ONLY_2L["n_ctx"], ATTN_ONLY_2L["d_vocab"], generator=generator)


GPT2_TINY = dict(d_model=128, d_head=32, n_heads=4, n_layers=2, d_mlp=512, n_ctx=128,
                 d_vocab=text.CharTokenizer().d_vocab, act_fn="gelu_new", normalization_type="LN", seed=0)


def _text_batch(generator: torch.Generator) -> torch.Tensor:
    if not hasattr(_text_batch, "data"):
        _text_batch.data = torch.tensor(text.CharTokenizer().encode(text.corpus("train"), prepend_bos=False))
    return text.text_batch(_text_batch.data, 16, GPT2_TINY["n_ctx"], generator=generator)


def _text_heldout(model: TransformerBridge) -> dict:
    """Held-out loss (nats per character on the test split) of the model and of two count baselines."""
    train_text, test_text = text.corpus("train"), text.corpus("test")
    return {"corpus_sha256": text.CORPUS_SHA256, "heldout_nats_per_char": {
        "model": round(text.model_loss(model, test_text, GPT2_TINY["n_ctx"]), 4),
        "unigram": round(text.unigram_loss(train_text, test_text), 4),
        "bigram": round(text.bigram_loss(train_text, test_text), 4)}}


# Prompts vary in layout (utils.data.ioi), so no position holds the answer; at width 64 the model
# copied names less reliably for name pairs it never saw together (about 95% held-out accuracy).
IOI_3L = dict(d_model=96, d_head=24, n_heads=4, n_layers=3, d_mlp=384, n_ctx=ioi.MAX_LEN,
              d_vocab=ioi.WordTokenizer().d_vocab, act_fn="gelu_new", normalization_type="LN", seed=0)


def _ioi_batch(generator: torch.Generator) -> ioi.IOIBatch:
    return ioi.ioi_batch(128, "train", generator=generator)


def _ioi_loss(model: TransformerBridge, batch: ioi.IOIBatch) -> torch.Tensor:
    """Cross-entropy on the answer token only: the task is to name the indirect object."""
    device = next(model.parameters()).device
    logits = ioi.logits_at_end(model(batch.clean.to(device)), batch)
    return torch.nn.functional.cross_entropy(logits, batch.io.to(device))


# The board is the ground truth chapter 6 probes for; the output covers the 36 squares only.
OTHELLO_4L = dict(d_model=96, d_head=24, n_heads=4, n_layers=4, d_mlp=384, n_ctx=othello.MAX_MOVES,
                  d_vocab=othello.D_VOCAB, d_vocab_out=othello.N_SQUARES, act_fn="gelu_new",
                  normalization_type="LN", seed=0)


def _othello_batch(generator: torch.Generator) -> othello.Games:
    return othello.random_games(128, generator=generator)


def othello_loss(logits: torch.Tensor, games: othello.Games) -> torch.Tensor:
    """Cross-entropy against the uniform distribution over the legal next moves.

    Random play picks each legal move with equal chance, so this is the expected next-move loss
    (what a model trained on the played moves minimises) with less noise per game."""
    target = games.legal.float() / games.legal.sum(dim=-1, keepdim=True).clamp(min=1)
    per_position = -(target.to(logits.device) * logits.log_softmax(dim=-1)).sum(dim=-1)
    return per_position[games.predictable.to(logits.device)].mean()


def _othello_loss(model: TransformerBridge, games: othello.Games) -> torch.Tensor:
    return othello_loss(model(games.moves.to(next(model.parameters()).device)), games)


def _othello_heldout(model: TransformerBridge) -> dict:
    """How often the top prediction is a legal move, on 2,000 games the training stream never drew."""
    games = othello.random_games(2000, generator=torch.Generator().manual_seed(othello.HELDOUT_SEED))
    with torch.no_grad():
        top = model(games.moves).argmax(dim=-1)
    legal = games.legal.gather(-1, top[..., None])[..., 0]
    return {"heldout_top1_legal": round(legal[games.predictable].float().mean().item(), 4)}


# Chapter 8's model with a known two-hop computation (utils.data.facts): person -> city -> country. Its
# held-out two-hop questions are those of people it only ever saw in one-hop facts. With three layers it
# looked the city up too late to map it to a country (about 80% held out after the same warm-up); with four,
# layers 0-1 look the city up at the word after the name and layers 2-3 carry it to the end as a country.
FACTS_4L = dict(d_model=128, d_head=32, n_heads=4, n_layers=4, d_mlp=512, n_ctx=facts.MAX_LEN,
                d_vocab=facts.FactTokenizer().d_vocab, act_fn="gelu_new", normalization_type="LN", seed=0)
FACTS_WARMUP = 400


def _facts_loss(model: TransformerBridge, batch: facts.Facts) -> torch.Tensor:
    """Cross-entropy on the answer token only."""
    device = next(model.parameters()).device
    logits = facts.logits_at_end(model(batch.tokens.to(device)), batch)
    return torch.nn.functional.cross_entropy(logits, batch.answer.to(device))


@torch.no_grad()
def facts_accuracy(model: TransformerBridge, batch: facts.Facts, chunk: int = 2048) -> torch.Tensor:
    """[n] bool: whether the model's top token (over the whole vocabulary) is each prompt's answer."""
    device = next(model.parameters()).device
    correct = []
    for i in range(0, len(batch), chunk):
        part = batch[torch.arange(i, min(i + chunk, len(batch)))]
        logits = facts.logits_at_end(model(part.tokens.to(device)), part)
        correct.append(logits.argmax(-1).cpu() == part.answer)
    return torch.cat(correct)


def names_only_baseline() -> float:
    """Held-out two-hop accuracy of a guess that cannot compose: the country most common among the
    trained people who share the held-out person's first name or surname."""
    w, n_last = facts.world(), len(facts.SURNAMES)
    people = torch.arange(facts.N_PEOPLE)
    first, last = people // n_last, people % n_last
    trained = ~w.held_out
    hits = []
    for p in people[w.held_out]:
        share = trained & ((first == first[p]) | (last == last[p]))
        hits.append(torch.bincount(w.person_country[share], minlength=facts.N_COUNTRIES).argmax() == w.person_country[p])
    return torch.stack(hits).float().mean().item()


def _facts_heldout(model: TransformerBridge) -> dict:
    """Accuracy on every one-hop fact, the trained and the held-out two-hop questions, and baselines."""
    model.eval()
    result = {f"{kind}_{split}": round(facts_accuracy(model, facts.facts(kind, split)).float().mean().item(), 4)
              for kind, split in (("person_city", "all"), ("city_country", "all"), ("person_country", "train"),
                                  ("person_country", "heldout"))}
    heldout = facts.facts("person_country", "heldout")
    correct = facts_accuracy(model, heldout)
    result["person_country_heldout_worst_template"] = round(min(
        correct[heldout.template == t].float().mean().item() for t in heldout.template.unique()), 4)
    result["baselines"] = {"chance": round(1 / facts.N_COUNTRIES, 4), "names_only": round(names_only_baseline(), 4)}
    return {"accuracy": result}


RECIPES = {
    "attn_only_2l": Recipe(ATTN_ONLY_2L, _induction_batch, steps=3000, lr=3e-3,
                           notes={"data": "copied segments of length 4-19 at random positions (utils.data.induction)"}),
    "gpt2_tiny": Recipe(GPT2_TINY, _text_batch, steps=1500, lr=2e-3, evaluate=_text_heldout,
                        notes={"data": "character-level docstrings of CPython 3.11's standard library, the train "
                                       "split (utils.data.text.corpus('train'); held out: whole modules, 10%)"}),
    "ioi_3l": Recipe(IOI_3L, _ioi_batch, steps=1750, lr=1e-3, weight_decay=0.1, loss_fn=_ioi_loss,
                     notes={"data": "synthetic IOI prompts of varied layout, training layouts and name pairs "
                                    "(utils.data.ioi); "
                                    "loss on the answer token only"}),
    "othello_4l": Recipe(OTHELLO_4L, _othello_batch, steps=3000, lr=2e-3, loss_fn=_othello_loss,
                         evaluate=_othello_heldout,
                         notes={"data": "random legal 6x6 Othello games stopped at the first pass "
                                        "(utils.data.othello); loss against the uniform distribution over "
                                        "the legal next moves"}),
    "facts_4l": Recipe(FACTS_4L, facts.TrainingStream(128, warmup=FACTS_WARMUP), steps=3000, lr=1e-3,
                       weight_decay=0.1, loss_fn=_facts_loss, evaluate=_facts_heldout,
                       notes={"data": "the fact language of utils.data.facts (person -> city -> country, "
                                      "varied templates and openings); one-hop facts only for the first "
                                      f"{FACTS_WARMUP} steps, then every one-hop fact and the two-hop "
                                      "questions of the trained people; loss on the answer token only",
                              "control": "the same recipe for 2,000 steps without the held-out people's one-hop "
                                         "facts (facts.TrainingStream(..., control=True)): 10.4% on their "
                                         "two-hop questions (a third of them; chance 12.5%), so the held-out "
                                         "answers come from those facts"}),
}


def train_recipe(name: str, device: str = "cpu", progress: bool = True) -> TransformerBridge:
    recipe = RECIPES[name]
    torch.manual_seed(recipe.config.get("seed", 0))
    model = build_model(recipe.config).to(device)
    start = time.perf_counter()
    losses = train(model, recipe.batch_fn, recipe.steps, recipe.lr, recipe.weight_decay, progress=progress,
                   loss_fn=recipe.loss_fn)
    final = sum(losses[-100:]) / len(losses[-100:])
    info = {"steps": recipe.steps, "lr": recipe.lr, "final_loss": round(final, 4),
            "train_seconds": round(time.perf_counter() - start), "torch": torch.__version__, **recipe.notes}
    if recipe.evaluate is not None:
        info.update(recipe.evaluate(model))
    path = save_model(name, model.cpu(), recipe.config, info)
    print(f"{name}: final loss {final:.3f}, saved {path}")
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m utils.models.train", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(RECIPES)}")
    parser.add_argument("--all", action="store_true", help="retrain every model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    names = list(RECIPES) if args.all else args.names
    if not names:
        parser.error("name a model or pass --all")
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    for name in names:
        train_recipe(name, args.device)


if __name__ == "__main__":
    main()
