"""A fact language with a known two-hop computation, for Chapter 8 (attribution graphs).

A fictional world, fixed by `WORLD_SEED`: every person lives in one city, every
city lies in one country.

    one hop, person -> city:     "Ada Lowe lives in"                 -> "Westholm"
    one hop, city -> country:    "Westholm lies in"                  -> "Dunmark"
    two hops, person -> country: "Ada Lowe lives in the country of"  -> "Dunmark"

The two-hop answer needs the hidden intermediate (the city), which no two-hop
prompt names. Training covers every one-hop fact and the two-hop questions of
most people; for the held-out people (a quarter of every city's residents, Ada
Lowe among them) the two-hop question is never trained, while both of their
one-hop facts are.
A model that answers them has composed the two lookups internally; one that
memorised person -> country for the trained people can only guess (one country
in `N_COUNTRIES`).

The vocabulary is word-level: a city or a country is one token, a person two
(a first name and a surname, each shared by many people), so no token on its
own says where someone lives.

Each kind of fact has several templates that put the subject at different
places and end on different words, behind openings of zero to four words, so
no position holds the subject or the answer (a fixed layout lets a small model
solve a task by position; see CURRICULUM.md). Every prompt of the language is
enumerated once (`all_facts`, 22,848 rows); the training stream draws rows of
the training split from it (`training_batch`, `TrainingStream`).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, fields

import torch
from jaxtyping import Bool, Int
from torch import Tensor

WORLD_SEED = 0
N_COUNTRIES, CITIES_PER_COUNTRY, PEOPLE_PER_CITY, HELD_OUT_PER_CITY = 8, 4, 8, 2
N_CITIES = N_COUNTRIES * CITIES_PER_COUNTRY
N_PEOPLE = N_CITIES * PEOPLE_PER_CITY

COUNTRIES = ["Aldoria", "Brevia", "Calmora", "Dunmark", "Estria", "Falkany", "Gorvia", "Halvene"][:N_COUNTRIES]
CITIES = ["Ashford", "Bellmoor", "Corwin", "Dalby", "Elmsted", "Fenwick", "Glenport", "Harrow",
          "Ivydale", "Jarlow", "Kesterly", "Lindale", "Marlow", "Northam", "Oakhurst", "Pendle",
          "Quenby", "Redcliff", "Saltmere", "Thornby", "Upwood", "Valewick", "Westholm", "Yarrow",
          "Brightwater", "Coldmere", "Dunmore", "Eastleigh", "Fairhaven", "Greystone", "Highgate",
          "Larkspur"][:N_CITIES]
# A person is a first name and a surname, two tokens: no single token says where someone lives, so the
# first hop must be looked up from the pair (by an MLP). With one token per person, the trained embedding
# itself came to hold the city (a linear probe read it off the embeddings of held-out people 92% of the
# time), leaving no lookup for a transcoder to find.
FIRST_NAMES = ["Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kit", "Lea", "Max",
               "Nia", "Otto", "Pia"]
SURNAMES = ["Archer", "Baker", "Carter", "Dawson", "Ellis", "Fisher", "Grant", "Hayes", "Irwin", "Jensen",
            "Keller", "Lowe", "Marsh", "Nolan", "Osborne", "Price"]
PEOPLE = [f"{a} {b}" for a, b in itertools.product(FIRST_NAMES, SURNAMES)][:N_PEOPLE]

KINDS = ("person_city", "city_country", "person_country")
# {P} a person, {C} a city. Templates of one kind end on different words, and "lives in the city of"
# sits beside "lives in the country of", so the model must read which attribute is asked for.
TEMPLATES = {
    "person_city": [
        "{P} lives in",
        "{P} is living in",
        "{P} has a home in",
        "the home of {P} is in",
        "the city where {P} lives is",
        "{P} lives in the city of",
    ],
    "city_country": [
        "{C} is in",
        "{C} lies in",
        "the city of {C} is in",
        "{C} is a city in",
        "the country of {C} is",
        "{C} is in the country of",
    ],
    "person_country": [
        "{P} lives in the country of",
        "{P} lives in a city in",
        "the home of {P} is in the country of",
        "the country where {P} lives is",
        "{P} has a home in the country of",
        "the country that {P} lives in is",
    ],
}
OPENINGS = ["", "so", "in fact ,", "as you know ,", "it is said that", "everyone knows that", "we all know that"]
BOS, PAD = "<bos>", "<pad>"
MAX_LEN = 2 + max(len(o.split()) for o in OPENINGS) + max(len(t.split()) for ts in TEMPLATES.values() for t in ts)


def _words() -> list[str]:
    words = {w for ts in TEMPLATES.values() for t in ts for w in t.split() if not w.startswith("{")}
    words |= {w for o in OPENINGS for w in o.split()}
    return [BOS, PAD] + sorted(words) + FIRST_NAMES + SURNAMES + CITIES + COUNTRIES


class FactTokenizer:
    """One token per word: a person is two tokens (first name, surname), a city or country one."""

    def __init__(self) -> None:
        self.words = _words()
        self.index = {w: i for i, w in enumerate(self.words)}
        self.bos_token_id = 0
        self.pad_token_id = 1
        self.first_name_ids = torch.tensor([self.index[p.split()[0]] for p in PEOPLE])
        self.surname_ids = torch.tensor([self.index[p.split()[1]] for p in PEOPLE])
        self.city_ids = torch.tensor([self.index[c] for c in CITIES])
        self.country_ids = torch.tensor([self.index[c] for c in COUNTRIES])

    @property
    def d_vocab(self) -> int:
        return len(self.words)

    def encode(self, text: str, prepend_bos: bool = True) -> list[int]:
        ids = [self.index[w] for w in text.replace(",", " , ").split()]
        return [self.bos_token_id] + ids if prepend_bos else ids

    def decode(self, ids) -> str:
        words = (self.words[int(i)] for i in ids if int(i) not in (self.pad_token_id, self.bos_token_id))
        return " ".join(words).replace(" ,", ",")


@dataclass(frozen=True)
class World:
    """Who lives where: the ground truth every fact is read from."""

    person_city: Int[Tensor, " person"]
    city_country: Int[Tensor, " city"]
    held_out: Bool[Tensor, " person"]  # people whose two-hop question is never trained

    @property
    def person_country(self) -> Int[Tensor, " person"]:
        return self.city_country[self.person_city]


@functools.cache
def world(seed: int = WORLD_SEED) -> World:
    """Each country gets `CITIES_PER_COUNTRY` cities and each city `PEOPLE_PER_CITY` people, at random;
    `HELD_OUT_PER_CITY` residents of every city are held out, so every city has held-out people."""
    g = torch.Generator().manual_seed(seed)
    city_country = torch.empty(N_CITIES, dtype=torch.long)
    city_country[torch.randperm(N_CITIES, generator=g)] = torch.arange(N_CITIES) // CITIES_PER_COUNTRY
    person_city = torch.empty(N_PEOPLE, dtype=torch.long)
    order = torch.randperm(N_PEOPLE, generator=g)
    person_city[order] = torch.arange(N_PEOPLE) // PEOPLE_PER_CITY
    held_out = torch.zeros(N_PEOPLE, dtype=torch.bool)
    held_out[order.view(N_CITIES, PEOPLE_PER_CITY)[:, :HELD_OUT_PER_CITY].flatten()] = True
    return World(person_city, city_country, held_out)


@dataclass
class Facts:
    """Prompts with their answers and the world's ground truth for each; right-padded, BOS first.

    For every kind, `city` and `country` are the subject's: the answer of a person -> city prompt,
    the subject of a city -> country prompt, and the hidden intermediate of a two-hop prompt."""

    tokens: Int[Tensor, "n pos"]
    end: Int[Tensor, " n"]  # the last word, where the answer is predicted
    answer: Int[Tensor, " n"]  # the answer's token id
    kind: Int[Tensor, " n"]  # index into KINDS
    subject: Int[Tensor, " n"]  # a person index (person_city, person_country) or a city index
    subject_pos: Int[Tensor, " n"]  # the subject's last token: a person's surname, or the city
    city: Int[Tensor, " n"]  # index into CITIES
    country: Int[Tensor, " n"]  # index into COUNTRIES
    template: Int[Tensor, " n"]  # index into TEMPLATES[KINDS[kind]]
    opening: Int[Tensor, " n"]  # index into OPENINGS

    def __len__(self) -> int:
        return len(self.answer)

    def __getitem__(self, rows) -> Facts:
        """A subset of the rows, trimmed to its longest prompt."""
        picked = {f.name: getattr(self, f.name)[rows] for f in fields(self)}
        width = int(picked["end"].max()) + 1 if len(picked["end"]) else 0
        picked["tokens"] = picked["tokens"][:, :width]
        return Facts(**picked)


@functools.cache
def all_facts() -> Facts:
    """Every prompt of the language: each kind x subject x template x opening, in that order."""
    tok, w = FactTokenizer(), world()
    rows = {f.name: [] for f in fields(Facts)}
    for k, kind in enumerate(KINDS):
        n_subjects = N_CITIES if kind == "city_country" else N_PEOPLE
        for s, (t, template), (o, opening) in itertools.product(
                range(n_subjects), enumerate(TEMPLATES[kind]), enumerate(OPENINGS)):
            city = s if kind == "city_country" else int(w.person_city[s])
            country = int(w.city_country[city])
            name = CITIES[s] if kind == "city_country" else PEOPLE[s]
            words = (f"{opening} {template}".split())
            subject_pos = 1 + words.index("{C}" if kind == "city_country" else "{P}") + (kind != "city_country")
            ids = tok.encode(" ".join(words).format(P=name, C=name))
            answer = CITIES[city] if kind == "person_city" else COUNTRIES[country]
            for key, value in (("tokens", ids + [tok.pad_token_id] * (MAX_LEN - len(ids))), ("end", len(ids) - 1),
                               ("answer", tok.index[answer]), ("kind", k), ("subject", s),
                               ("subject_pos", subject_pos), ("city", city), ("country", country),
                               ("template", t), ("opening", o)):
                rows[key].append(value)
    return Facts(**{key: torch.tensor(value) for key, value in rows.items()})


def _heldout_mask(facts: Facts) -> Bool[Tensor, " n"]:
    two_hop = facts.kind == KINDS.index("person_country")
    return two_hop & world().held_out[facts.subject.clamp(max=N_PEOPLE - 1)]


def facts(kind: str, split: str = "all", template: int | None = None, opening: int | None = None) -> Facts:
    """The prompts of one kind: `split` is "train" (the rows the training stream draws from), "heldout"
    (the held-out people's two-hop questions) or "all". A fixed `template` and `opening` line every
    position up across the rows, as position-wise patching and ablation need."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if split not in ("train", "heldout", "all"):
        raise ValueError("split must be 'train', 'heldout' or 'all'")
    every = all_facts()
    keep = every.kind == KINDS.index(kind)
    if split != "all":
        keep &= _heldout_mask(every) == (split == "heldout")
    if template is not None:
        keep &= every.template == template
    if opening is not None:
        keep &= every.opening == opening
    return every[keep.nonzero()[:, 0]]


# How often each kind is drawn for training. The stream starts with the one-hop facts alone (the model
# learns who lives where before it is asked to combine facts): trained on everything from the first step,
# it memorised person -> country for the trained people beside the lookups and composed on only about 60%
# of the held-out questions; after a one-hop warm-up it reuses the city it already looks up.
MIX = {"person_city": 0.35, "city_country": 0.15, "person_country": 0.5}
WARMUP_MIX = {"person_city": 0.7, "city_country": 0.3, "person_country": 0.0}


@functools.cache
def _training_pools(control: bool = False) -> tuple[Tensor, ...]:
    every = all_facts()
    train = ~_heldout_mask(every)
    if control:
        train &= ~world().held_out[every.subject.clamp(max=N_PEOPLE - 1)] | (every.kind == KINDS.index("city_country"))
    return tuple((train & (every.kind == k)).nonzero()[:, 0] for k in range(len(KINDS)))


def training_batch(n: int, generator: torch.Generator | None = None, mix: dict[str, float] | None = None,
                   control: bool = False) -> Facts:
    """`n` prompts of the training split: a kind drawn by `mix` (default `MIX`), then a prompt of that kind
    uniformly. With `control`, the held-out people's one-hop facts are left out too (the baseline model
    that has nothing to compose for them)."""
    mix = MIX if mix is None else mix
    pools = _training_pools(control)
    kinds = torch.multinomial(torch.tensor([mix[k] for k in KINDS]), n, replacement=True, generator=generator)
    rows = torch.zeros(n, dtype=torch.long)
    for k, pool in enumerate(pools):
        pick = torch.randint(len(pool), (n,), generator=generator)
        rows = torch.where(kinds == k, pool[pick], rows)
    return all_facts()[rows]


class TrainingStream:
    """The batches the fact model trains on: `WARMUP_MIX` (one-hop facts only) for the first `warmup`
    batches, then `MIX`. Called with a generator it has not seen, it starts again from the warm-up, so a
    fresh `train(...)` run (which seeds a new generator) replays the same stream."""

    def __init__(self, batch_size: int, warmup: int, control: bool = False) -> None:
        self.batch_size, self.warmup, self.control = batch_size, warmup, control
        self.step, self._generator = 0, None

    def __call__(self, generator: torch.Generator) -> Facts:
        if generator is not self._generator:
            self.step, self._generator = 0, generator
        mix = WARMUP_MIX if self.step < self.warmup else MIX
        self.step += 1
        return training_batch(self.batch_size, generator, mix, self.control)


def logits_at_end(logits: Tensor, batch: Facts) -> Tensor:
    """[n, d_vocab]: each prompt's prediction after its last word (padding ignored)."""
    return logits[torch.arange(len(batch), device=logits.device), batch.end.to(logits.device)]
