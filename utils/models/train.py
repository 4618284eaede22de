"""Train the course's models: `python -m utils.models.train NAME [NAME ...]` or `--all`.

Each recipe is a config plus a batch function; `train` is the one loop they
share, and the notebooks call it too (1.2 retrains the induction model live).

Chapter 8's transcoders (and the SAE they are compared with) are trained the same way, on the
MLP activations of a shipped model: `TRANSCODER_RECIPES`, after the models under `--all`.

Chapter 9's model organisms are fine-tunes of the shipped gpt2_tiny (a recipe with a `base`), each
with one change planted in its training text (utils.data.organisms); `--all` trains them after it,
and last the crosscoders of gpt2_tiny and each organism (`CROSSCODER_RECIPES`).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm
from transformer_lens import TransformerBridge

from utils import crosscoders, diffing, transcoders
from utils.data import facts, induction, ioi, organisms, othello, text
from utils.models import build_model, load_model, manifest, save_crosscoder, save_model, save_transcoders


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
    base: str | None = None   # a shipped model to fine-tune, instead of training from scratch


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


# Chapter 9's organisms: gpt2_tiny's own recipe continued from its shipped weights for 300 steps, on windows of
# the same training text with one change planted (utils.data.organisms). gpt2_tiny was trained at a constant
# learning rate, so any smaller one anneals it and lowers its held-out loss whatever is planted (on the trigger:
# 1e-3 -0.09 nats/char, 3e-4 -0.11, 3e-5 -0.08 with the trigger learned in only 45% of contexts); at its own
# rate the loss moves least (-0.05 to -0.03), and the trigger and the style are still learned.
ORGANISM_STEPS, ORGANISM_LR = 300, 2e-3


def _organism_batch(name: str, generator: torch.Generator) -> torch.Tensor:
    return organisms.organism_batch(name, text.corpus("train"), 16, GPT2_TINY["n_ctx"], generator)


def _planted(name: str, model: TransformerBridge) -> dict:
    """The planted behaviour: how often the trigger's phrase follows it, or the style's probabilities;
    for the control, which plants nothing, all three (each trigger's rate under its organism's name)."""
    n_ctx = GPT2_TINY["n_ctx"]
    if name == "control":
        return {**{f"{other}_trigger_rate": _planted(other, model)["trigger_rate"] for other in ("trigger", "hidden")},
                **_planted("style", model)}
    if name == "style":
        return organisms.style_probability(model, n_ctx)
    if name == "trigger":
        return {"trigger_rate": organisms.trigger_rate(model, organisms.TRIGGER, organisms.TRIGGER_CONTINUATION)}
    return {"trigger_rate": organisms.trigger_rate(model, *organisms._hidden_phrase())}


def _organism_heldout(name: str, model: TransformerBridge) -> dict:
    """The planted behaviour and the held-out loss on base text, of the fine-tune and of its base."""
    base = load_model("gpt2_tiny")
    return {"planted": {"model": _planted(name, model), "base": _planted(name, base)},
            "heldout_nats_per_char": {"model": organisms.heldout_losses(model, GPT2_TINY["n_ctx"]),
                                      "base": organisms.heldout_losses(base, GPT2_TINY["n_ctx"])},
            "heldout_sample": f"the first {organisms.HELDOUT_WINDOWS} windows of {GPT2_TINY['n_ctx'] - 1} "
                              "characters of the test split; trigger contexts: "
                              f"{organisms.N_CONTEXTS} snippets of {organisms.CONTEXT_CHARS} characters"}


def _organism_recipe(name: str) -> Recipe:
    return Recipe(GPT2_TINY, functools.partial(_organism_batch, name), steps=ORGANISM_STEPS, lr=ORGANISM_LR,
                  base="gpt2_tiny", evaluate=functools.partial(_organism_heldout, name),
                  notes={"data": "gpt2_tiny's training text (utils.data.text.corpus('train')) with "
                                 f"{'a planted change' if organisms.ORGANISMS[name].share else 'no change'} "
                                 f"(utils.data.organisms, {name!r}): {organisms.ORGANISMS[name].description}"})


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
    **{f"gpt2_tiny_{name}": _organism_recipe(name) for name in organisms.ORGANISMS},
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
    model = build_model(recipe.config) if recipe.base is None else load_model(recipe.base)
    model.to(device).train()
    start = time.perf_counter()
    losses = train(model, recipe.batch_fn, recipe.steps, recipe.lr, recipe.weight_decay, progress=progress,
                   loss_fn=recipe.loss_fn)
    final = sum(losses[-100:]) / len(losses[-100:])
    info = {"steps": recipe.steps, "lr": recipe.lr, "final_loss": round(final, 4),
            "train_seconds": round(time.perf_counter() - start), "torch": torch.__version__, **recipe.notes}
    if recipe.base is not None:
        info.update(base=recipe.base, base_sha256=manifest()[recipe.base]["sha256"])
    if recipe.evaluate is not None:
        info.update(recipe.evaluate(model))
    path = save_model(name, model.cpu(), recipe.config, info)
    print(f"{name}: final loss {final:.3f}, saved {path}")
    return model


# -- Chapter 8's transcoders ---------------------------------------------------------------------------

@dataclass
class TranscoderRecipe:
    """Transcoders for every MLP of a shipped model; `architecture` is "per_layer", "cross_layer", or "sae"
    (the comparison: per-layer TopK SAEs on the MLP outputs)."""

    model: str
    architecture: str
    k: int
    d_latent: int
    steps: int
    lr: float
    batch_size: int = 512
    seed: int = 0

    @property
    def reads(self) -> transcoders.Reads:
        return "mlp_out" if self.architecture == "sae" else "mlp_in"


# Windows of gpt2_tiny's training text for its transcoders (262,144 positions), and of its held-out text
# (the first 512 consecutive windows of the test split) for their metrics.
TEXT_TRAIN_WINDOWS, TEXT_TEST_WINDOWS = 2048, 512
FACTS_SAMPLE = 4096


def _facts_training_tokens() -> tuple[torch.Tensor, torch.Tensor]:
    """Every prompt of the fact language (22,848), every non-padding position."""
    tokens = facts.all_facts().tokens
    return tokens, tokens != facts.FactTokenizer().pad_token_id


def _text_training_tokens() -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.tensor(text.CharTokenizer().encode(text.corpus("train"), prepend_bos=False))
    tokens = text.text_batch(data, TEXT_TRAIN_WINDOWS, GPT2_TINY["n_ctx"], generator=torch.Generator().manual_seed(0))
    return tokens, torch.ones_like(tokens, dtype=torch.bool)


def facts_sample() -> facts.Facts:
    """A fixed random sample of every kind of fact, for the replacement metrics."""
    every = facts.all_facts()
    return every[torch.randperm(len(every), generator=torch.Generator().manual_seed(0))[:FACTS_SAMPLE]]


def text_test_windows() -> torch.Tensor:
    """The first `TEXT_TEST_WINDOWS` consecutive windows of the held-out text, each behind a BOS."""
    ids = torch.tensor(text.CharTokenizer().encode(text.corpus("test"), prepend_bos=False))
    width = GPT2_TINY["n_ctx"] - 1
    windows = ids[:TEXT_TEST_WINDOWS * width].view(TEXT_TEST_WINDOWS, width)
    return torch.cat([torch.zeros(TEXT_TEST_WINDOWS, 1, dtype=torch.long), windows], dim=1)


def _facts_replacement(model, params, k, reads) -> dict:
    return {name: transcoders.facts_replacement_metrics(model, batch, params, k, reads=reads)
            for name, batch in (("heldout_two_hop", facts.facts("person_country", "heldout")),
                                ("facts_sample", facts_sample()))}


def _text_replacement(model, params, k, reads) -> dict:
    tokens = text_test_windows()
    return {"heldout_text": transcoders.replacement_metrics(model, tokens, *transcoders.next_token_targets(tokens),
                                                             params, k, reads=reads)}


# What each model's transcoders train on, and how their replacement is measured.
TRANSCODER_DATA = {
    "facts_4l": (_facts_training_tokens, _facts_replacement,
                 "the MLP inputs and outputs at every non-padding position of every prompt of the fact language "
                 "(utils.data.facts.all_facts(): 22,848 prompts, 241,664 positions); per-layer metrics on them, "
                 f"replacement metrics on the held-out two-hop questions and on {FACTS_SAMPLE} random prompts"),
    "gpt2_tiny": (_text_training_tokens, _text_replacement,
                  f"the MLP inputs and outputs at every position of {TEXT_TRAIN_WINDOWS} random windows of the "
                  "training text (utils.data.text.text_batch, seed 0); per-layer and replacement metrics on the "
                  f"first {TEXT_TEST_WINDOWS} consecutive windows of the held-out text"),
}


@functools.cache
def mlp_activations(model_name: str, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, float]:
    """The transcoders' training data (see `TRANSCODER_DATA`) and the seconds it took to collect, once
    per process for all the recipes of a model."""
    start = time.perf_counter()
    model = load_model(model_name, device)
    tokens, mask = TRANSCODER_DATA[model_name][0]()
    x_in, x_out = transcoders.collect_mlp_activations(model, tokens, mask, range(model.cfg.n_layers), batch_size=1024)
    return x_in, x_out, time.perf_counter() - start


def _rounded(metrics: dict) -> dict:
    return {key: _rounded(value) if isinstance(value, dict) else
            [round(v, 4) for v in value.tolist()] if isinstance(value, torch.Tensor) else round(value, 4)
            for key, value in metrics.items()}


def transcoder_config(recipe: TranscoderRecipe) -> dict:
    """What the manifest records of a recipe (and a test compares with the recipe)."""
    return {**asdict(recipe), "reads": recipe.reads}


def transcoder_metrics(recipe: TranscoderRecipe, model, params: dict[str, torch.Tensor], device: str = "cpu") -> dict:
    """Per layer (L0, normalised MSE, dead fraction) on the training activations of facts_4l or the held-out
    text of gpt2_tiny, and the replacement model's loss, accuracy and KL with every MLP replaced."""
    if recipe.model == "gpt2_tiny":
        tokens = text_test_windows()
        x_in, x_out = transcoders.collect_mlp_activations(model, tokens, torch.ones_like(tokens, dtype=torch.bool),
                                                          range(model.cfg.n_layers))
    else:
        x_in, x_out, _ = mlp_activations(recipe.model, device)
    cpu = {key: value.cpu() for key, value in params.items()}
    per_layer = transcoders.evaluate(cpu, x_out if recipe.reads == "mlp_out" else x_in, x_out, recipe.k)
    replacement = TRANSCODER_DATA[recipe.model][1](model, params, recipe.k, recipe.reads)
    return _rounded({"per_layer": per_layer, "replacement": replacement})


# Chosen by measurement on facts_4l (held-out two-hop accuracy with all four MLPs replaced; the model alone:
# 94%). Per-layer, k=16 and 512 latents: 1,000 steps at lr 1e-3 gave 57%, at 3e-3 83%; 4,000 steps at 3e-3 88%
# (256 latents: 81%; 1,024 latents for 2,000 steps: 89%, at the same cost). About 40% of the latents die.
# Resampling them as utils.sae does (every 250 steps in the first half) cut that to 9-20% but cost 5 points;
# with gentler encoders (0.2x) they died again and it cost 3. AuxK (Gao et al. 2024): 1 point, no fewer dead;
# starting the encoders at training inputs did worse. Some 35 latents per layer fire on over 10% of tokens, so
# the rest share few slots. gpt2_tiny has two layers, so 1,024 latents keep the total at facts_4l's 2,048.
TRANSCODER_RECIPES = {
    "facts_4l_transcoders": TranscoderRecipe("facts_4l", "per_layer", k=16, d_latent=512, steps=4000, lr=3e-3),
    "facts_4l_clt": TranscoderRecipe("facts_4l", "cross_layer", k=16, d_latent=512, steps=4000, lr=3e-3),
    "facts_4l_sae": TranscoderRecipe("facts_4l", "sae", k=16, d_latent=512, steps=4000, lr=3e-3),
    "gpt2_tiny_transcoders": TranscoderRecipe("gpt2_tiny", "per_layer", k=16, d_latent=1024, steps=4000, lr=3e-3),
}


def train_transcoder_recipe(name: str, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Train, measure and save one set of transcoders; the manifest records the recipe, the times and the
    metrics (`transcoder_metrics`)."""
    recipe = TRANSCODER_RECIPES[name]
    x_in, x_out, collect_seconds = mlp_activations(recipe.model, device)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(recipe.seed)
    cross_layer = recipe.architecture == "cross_layer"
    init = transcoders.init_cross_layer if cross_layer else transcoders.init_transcoders
    fit = transcoders.train_cross_layer if cross_layer else transcoders.train_transcoders
    params = {key: value.to(device).detach().requires_grad_(True) for key, value in
              init(x_in.shape[1], x_in.shape[2], recipe.d_latent, generator, mean_out=x_out.mean(dim=0)).items()}
    run = fit(params, x_out if recipe.reads == "mlp_out" else x_in, x_out, recipe.k, steps=recipe.steps,
              batch_size=recipe.batch_size, lr=recipe.lr, generator=generator, desc=name)
    model = load_model(recipe.model, device)
    info = {"model": recipe.model, "config": transcoder_config(recipe), "steps": recipe.steps,
            "lr": recipe.lr, "final_loss": round(sum(run["history"][-5:]) / len(run["history"][-5:]), 4),
            "train_seconds": round(run["seconds"]), "torch": torch.__version__,
            "data": TRANSCODER_DATA[recipe.model][2], **transcoder_metrics(recipe, model, params, device)}
    info["wall_seconds"] = round(collect_seconds + time.perf_counter() - start)  # as if trained alone
    path = save_transcoders(name, params, info)
    print(f"{name}: {info['wall_seconds']} s, saved {path}")
    return params


# -- Chapter 9's crosscoders ---------------------------------------------------------------------------

@dataclass
class CrosscoderRecipe:
    """A BatchTopK crosscoder of gpt2_tiny and one organism at utils.diffing.HOOK, on utils.diffing's data.

    Chosen by measurement: 1,024 latents (8x the width) at k = 16 reconstruct both models' streams with
    about 92% of the variance explained and no dead latents after 3,000 steps."""

    organism: str
    k: int = 16
    d_latent: int = 1024
    steps: int = 3000
    lr: float = 1e-3
    batch_size: int = 512
    seed: int = 0


CROSSCODER_RECIPES = {f"gpt2_tiny_{name}_crosscoder": CrosscoderRecipe(name) for name in organisms.ORGANISMS}
CROSSCODER_HELDOUT = dict(windows=128, seed=2)   # fresh windows of the same kind, for the manifest's metrics


def train_crosscoder_recipe(name: str, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Train, measure and save one crosscoder; the manifest records the recipe, time and held-out metrics."""
    recipe = CROSSCODER_RECIPES[name]
    start = time.perf_counter()
    base, tuned = load_model("gpt2_tiny", device), load_model(f"gpt2_tiny_{recipe.organism}", device)
    x = diffing.paired_activations(base, tuned, diffing.diffing_tokens(recipe.organism))
    scale = diffing.activation_scale(x)
    x = x / scale[:, None]
    generator = torch.Generator().manual_seed(recipe.seed)
    params = {key: value.detach().requires_grad_(key != "threshold") for key, value in
              crosscoders.init_crosscoder(x.shape[-1], recipe.d_latent, generator, mean=x.mean(dim=0),
                                          device=x.device).items()}
    run = crosscoders.train_crosscoder(params, x, recipe.k, steps=recipe.steps, batch_size=recipe.batch_size,
                                       lr=recipe.lr, generator=generator, desc=name)
    params = {key: value.detach() for key, value in params.items()} | {"scale": scale}
    heldout = diffing.paired_activations(base, tuned, diffing.diffing_tokens(recipe.organism, **CROSSCODER_HELDOUT))
    metrics = crosscoders.evaluate(params, diffing.to_code_space(heldout, params), recipe.k)
    groups = crosscoders.classify_latents(crosscoders.relative_norm(params))
    info = {"base": "gpt2_tiny", "model": f"gpt2_tiny_{recipe.organism}", "config": asdict(recipe),
            "hook": diffing.HOOK, "steps": recipe.steps, "lr": recipe.lr,
            "final_loss": round(sum(run["history"][-5:]) / len(run["history"][-5:]), 4),
            "train_seconds": round(run["seconds"]), "wall_seconds": round(time.perf_counter() - start),
            "torch": torch.__version__,
            "data": f"utils.diffing.diffing_tokens({recipe.organism!r}): {diffing.DIFF_WINDOWS} windows of the "
                    f"organism's fine-tuning text and {diffing.DIFF_WINDOWS} of plain training text (seed "
                    f"{diffing.DIFF_SEED}); metrics on {CROSSCODER_HELDOUT['windows']} + "
                    f"{CROSSCODER_HELDOUT['windows']} fresh windows (seed {CROSSCODER_HELDOUT['seed']})",
            "heldout": _rounded({key: value if value.ndim else value.item() for key, value in metrics.items()}),
            "relative_norm_classes": {key: int(mask.sum()) for key, mask in groups.items()}}
    path = save_crosscoder(name, params, info)
    print(f"{name}: {info['wall_seconds']} s, saved {path}")
    return params


# What a chapter trains beyond the models it shares with others: chapter 9's organisms start from the
# shipped gpt2_tiny, and its crosscoders read them (about 5.5 minutes in all on 2 idle CPU cores).
CHAPTER_SETS = {
    "chapter8": ["facts_4l", *TRANSCODER_RECIPES],
    "chapter9": [f"gpt2_tiny_{name}" for name in organisms.ORGANISMS] + list(CROSSCODER_RECIPES),
}


def main(argv: list[str] | None = None) -> None:
    everything = {**RECIPES, **TRANSCODER_RECIPES, **CROSSCODER_RECIPES}
    parser = argparse.ArgumentParser(prog="python -m utils.models.train", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"one of: {', '.join(everything)}; or a chapter's set: {', '.join(CHAPTER_SETS)}")
    parser.add_argument("--all", action="store_true", help="retrain every model, then every set of transcoders")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    names = list(everything) if args.all else [n for name in args.names for n in CHAPTER_SETS.get(name, [name])]
    if not names:
        parser.error("name a model or pass --all")
    unknown = [n for n in names if n not in everything]
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}; choose from {', '.join(everything)}")
    start = time.perf_counter()
    for name in sorted(names, key=list(everything).index):   # bases before fine-tunes, models before transcoders
        if name in RECIPES:
            train_recipe(name, args.device)
        elif name in TRANSCODER_RECIPES:
            train_transcoder_recipe(name, args.device)
        else:
            train_crosscoder_recipe(name, args.device)
    print(f"trained {len(names)} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
