"""The fact language of Chapter 8: answers read from the world, an honest held-out split, varied layouts."""

import torch

from utils.data import facts as F


def test_the_world_is_fixed_by_its_seed_and_balanced():
    w = F.world()
    assert torch.equal(w.person_city, F.world(F.WORLD_SEED).person_city)
    assert not torch.equal(w.person_city, F.world(F.WORLD_SEED + 1).person_city)
    assert (torch.bincount(w.person_city, minlength=F.N_CITIES) == F.PEOPLE_PER_CITY).all()
    assert (torch.bincount(w.city_country, minlength=F.N_COUNTRIES) == F.CITIES_PER_COUNTRY).all()
    assert (torch.bincount(w.person_city[w.held_out], minlength=F.N_CITIES) == F.HELD_OUT_PER_CITY).all()
    assert len(set(F.PEOPLE)) == F.N_PEOPLE and len(F.CITIES) == F.N_CITIES and len(F.COUNTRIES) == F.N_COUNTRIES


def test_no_single_name_token_says_where_someone_lives():
    """The first hop needs the pair: every first name and surname is shared by people of many cities."""
    w = F.world()
    first, last = torch.arange(F.N_PEOPLE) // len(F.SURNAMES), torch.arange(F.N_PEOPLE) % len(F.SURNAMES)
    for part in (first, last):
        for name in part.unique():
            assert len(w.person_city[part == name].unique()) >= 8
            assert len(w.person_country[part == name].unique()) >= 4


def test_every_answer_is_the_worlds():
    tok, w, every = F.FactTokenizer(), F.world(), F.all_facts()
    rows = torch.arange(len(every))
    assert len(every) == (2 * F.N_PEOPLE + F.N_CITIES) * 6 * len(F.OPENINGS)
    for k, kind in enumerate(F.KINDS):
        f = every[(every.kind == k).nonzero()[:, 0]]
        r = torch.arange(len(f))
        if kind == "city_country":
            assert torch.equal(f.tokens[r, f.subject_pos], tok.city_ids[f.subject])
            assert torch.equal(f.city, f.subject)
        else:
            assert torch.equal(f.tokens[r, f.subject_pos - 1], tok.first_name_ids[f.subject])
            assert torch.equal(f.tokens[r, f.subject_pos], tok.surname_ids[f.subject])
            assert torch.equal(f.city, w.person_city[f.subject])
        assert torch.equal(f.country, w.city_country[f.city])
        expected = tok.city_ids[f.city] if kind == "person_city" else tok.country_ids[f.country]
        assert torch.equal(f.answer, expected)
    assert (every.tokens[:, 0] == tok.bos_token_id).all()
    after_end = torch.arange(every.tokens.shape[1]) > every.end[:, None]
    assert (every.tokens[after_end] == tok.pad_token_id).all() and (every.tokens[~after_end] != tok.pad_token_id).all()
    assert not torch.isin(every.tokens[rows, every.end], torch.cat([tok.city_ids, tok.country_ids])).any()


def test_no_position_holds_the_subject_or_the_end():
    every = F.all_facts()
    for role in (every.subject_pos, every.end):
        assert len(role.unique()) >= 8
        assert torch.bincount(role).max() < 0.3 * len(every)


def test_a_fixed_template_and_opening_line_every_position_up():
    f = F.facts("person_country", "all", template=3, opening=4)
    assert len(f) == F.N_PEOPLE
    assert len(f.subject_pos.unique()) == 1 and len(f.end.unique()) == 1
    assert f.end[0] == f.tokens.shape[1] - 1


def test_the_split_holds_out_two_hop_questions_only():
    w = F.world()
    heldout, train = F.facts("person_country", "heldout"), F.facts("person_country", "train")
    assert set(heldout.subject.tolist()) == set(w.held_out.nonzero()[:, 0].tolist())
    assert not w.held_out[train.subject].any()
    assert len(heldout) + len(train) == len(F.facts("person_country"))
    for kind in ("person_city", "city_country"):
        assert len(F.facts(kind, "heldout")) == 0 and len(F.facts(kind, "train")) == len(F.facts(kind))
    one_hop = F.facts("person_city", "train")
    assert w.held_out[one_hop.subject].sum() == F.N_PEOPLE // 4 * 6 * len(F.OPENINGS)


def test_the_training_stream_never_asks_a_held_out_two_hop_question():
    w, g = F.world(), torch.Generator().manual_seed(0)
    batches = [F.training_batch(256, g) for _ in range(200)]
    kinds = torch.cat([b.kind for b in batches])
    people = torch.cat([b.subject for b in batches])
    two_hop = kinds == F.KINDS.index("person_country")
    assert not w.held_out[people[two_hop]].any()
    assert w.held_out[people[kinds == F.KINDS.index("person_city")]].float().mean() > 0.2
    shares = torch.bincount(kinds, minlength=3).float() / len(kinds)
    assert torch.allclose(shares, torch.tensor([F.MIX[k] for k in F.KINDS]), atol=0.02)


def test_batches_are_reproducible_and_trimmed():
    a = F.training_batch(64, torch.Generator().manual_seed(3))
    b = F.training_batch(64, torch.Generator().manual_seed(3))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.answer, b.answer)
    assert a.tokens.shape[1] == a.end.max() + 1 <= F.MAX_LEN


def test_tokenizer_round_trip():
    tok = F.FactTokenizer()
    text = "in fact, Ada Marsh lives in the country of"
    assert tok.decode(tok.encode(text)) == text
    assert tok.d_vocab == len(set(tok.words))


def test_the_control_stream_never_names_a_held_out_person():
    w, g = F.world(), torch.Generator().manual_seed(0)
    stream = F.TrainingStream(256, warmup=5, control=True)
    batches = [stream(g) for _ in range(40)]
    person = torch.cat([b.kind != F.KINDS.index("city_country") for b in batches])
    people = torch.cat([b.subject for b in batches])
    assert not w.held_out[people[person]].any()
    assert torch.cat([b.kind for b in batches[:5]]).ne(F.KINDS.index("person_country")).all()


def test_a_stream_restarts_with_a_new_generator():
    stream = F.TrainingStream(32, warmup=2)
    g = torch.Generator().manual_seed(0)
    first = [stream(g) for _ in range(3)]
    assert stream.step == 3 and first[2].kind.eq(F.KINDS.index("person_country")).any()
    h = torch.Generator().manual_seed(0)
    again = [stream(h) for _ in range(3)]
    assert all(torch.equal(a.tokens, b.tokens) for a, b in zip(first, again))


def test_the_module_docstrings_example_is_the_worlds():
    w, p = F.world(), F.PEOPLE.index("Ada Lowe")
    assert F.CITIES[w.person_city[p]] == "Westholm" and F.COUNTRIES[w.person_country[p]] == "Dunmark"
    assert w.held_out[p]
