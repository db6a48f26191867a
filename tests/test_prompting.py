"""The attribute-anchored prompt layout, the prompt learner and the text encoder (trainers/prompting.py)."""

import pytest
import torch
from tiny_clip import make_tiny_clip

import clip
from dassl.utils.errors import UserError
from trainers.atprompt import attributes_from_cfg
from trainers.config import get_cfg
from trainers.layout import PromptLayout, tokenizer
from trainers.prompting import (
    PromptedCLIP,
    PromptLearner,
    TextEncoder,
)

SOS, EOT, X, DOT = 49406, 49407, 343, 269


def ids(text: str) -> list[int]:
    return tokenizer().encode(text)


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_clip("vit", seed=0).eval()


def test_caltech_example_layout():
    # REFERENCE: n_a = n_c = 2, attributes (shape, size): SOS x x shape x x size x x <name> . EOT
    layout = PromptLayout(["face"], n_ctx=2, attributes=[("shape", 2), ("size", 2)])
    row = layout.token_ids[0].tolist()
    assert row[:12] == [SOS, X, X, *ids("shape"), X, X, *ids("size"), X, X, *ids("face"), DOT, EOT]
    assert layout.soft_positions[0].tolist() == [1, 2, 4, 5, 7, 8]
    assert layout.block_positions("ctx")[0].tolist() == [7, 8]
    assert layout.eot.tolist() == [11] and layout.seq_len == 12


def test_layout_ids_equal_tokenized_template():
    names = ["golden_retriever", "Faces easy", "st. bernard"]
    layout = PromptLayout(names, n_ctx=3, attributes=[("color", 1), ("habitat", 2)])
    texts = [f"X color X X habitat X X X {n.replace('_', ' ')}." for n in names]
    assert torch.equal(layout.token_ids, clip.tokenize(texts))


@pytest.mark.parametrize("k", range(6))
def test_any_number_of_attributes(k):
    words = ["color", "shape", "size", "pattern", "texture"][:k]
    attributes = [(w, n) for w, n in zip(words, [1, 2, 3, 1, 2])]
    layout = PromptLayout(["dog", "sea lion"], n_ctx=4, attributes=attributes)
    assert layout.n_soft == sum(n for _, n in attributes) + 4
    soft = layout.token_ids.gather(1, layout.soft_positions)
    assert (soft == X).all()  # every soft token sits on a placeholder, nothing else does
    assert ((layout.token_ids == X).sum(1) == layout.n_soft).all()
    for word in words:
        assert ids(word)[0] in layout.token_ids[0].tolist()


def test_multi_token_word_keeps_all_its_tokens():
    assert len(ids("playfulness")) == 2
    layout = PromptLayout(["pug"], n_ctx=2, attributes=[("playfulness", 2), ("energy", 2)])
    row = layout.token_ids[0].tolist()
    assert row[:10] == [SOS, X, X, *ids("playfulness"), X, X, *ids("energy"), X, X]
    assert layout.soft_positions[0].tolist() == [1, 2, 5, 6, 8, 9]


def test_single_token_compat_reproduces_original_corruption(tiny):
    # The original took one position per word: "play" stays, an "x" replaces "energy", "fulness" and "energy" go.
    with pytest.warns(UserWarning, match="playfulness"):
        learner = PromptLearner(tiny, ["pug"], 2, [("playfulness", 2), ("energy", 2)], single_token_words=True)
    assert learner.layout.soft_positions[0].tolist() == [1, 2, 4, 5, 7, 8]
    prompt = learner()[0]
    embed = tiny.token_embedding.weight
    assert torch.equal(prompt[3], embed[ids("playfulness")[0]])
    assert torch.equal(prompt[6], embed[X])
    assert torch.equal(prompt[9], embed[X])  # an extra placeholder before the class name
    assert torch.equal(prompt[10], embed[ids("pug")[0]])


def test_prompt_too_long_names_the_class():
    with pytest.raises(UserError, match="very long"):
        PromptLayout(["ok", "very long " * 40], n_ctx=4, attributes=[("color", 4)])


def test_class_positions():
    n_name = len(ids("sea lion"))
    middle = PromptLayout(["sea lion"], n_ctx=4, class_position="middle")
    assert middle.soft_positions[0].tolist() == [1, 2, 3 + n_name, 4 + n_name]
    front = PromptLayout(["sea lion"], n_ctx=4, class_position="front")
    assert front.soft_positions[0].tolist() == [1 + n_name + i for i in range(4)]
    for layout in (middle, front):
        assert (layout.token_ids.gather(1, layout.soft_positions) == X).all()


def test_learner_places_parameters_and_fixed_tokens(tiny):
    learner = PromptLearner(tiny, ["cat", "sea lion"], 2, [("color", 1), ("shape", 3)])
    prompts = learner()
    assert prompts.shape == (2, learner.layout.seq_len, tiny.ln_final.weight.shape[0])
    soft = learner.soft_tokens()
    for c in range(2):
        assert torch.equal(prompts[c, learner.layout.soft_positions[c]], soft)
        fixed = torch.ones(prompts.shape[1], dtype=torch.bool)
        fixed[learner.layout.soft_positions[c]] = False
        expected = tiny.token_embedding(learner.layout.token_ids[c, : prompts.shape[1]])
        assert torch.equal(prompts[c, fixed], expected[fixed])
    assert sorted(n for n, _ in learner.named_parameters()) == ["ctx", "ctx_att1", "ctx_att2"]


def test_learner_batched_and_class_specific_context(tiny):
    learner = PromptLearner(tiny, ["cat", "dog", "cow"], 2, [("color", 2)], csc=True)
    assert learner.ctx.shape[:2] == (3, 2)
    assert learner().shape[0] == 3
    shift = torch.randn(5, 1, 1, learner.ctx.shape[-1])
    shared = PromptLearner(tiny, ["cat", "dog", "cow"], 2, [("color", 2)])
    batched = shared(shared.ctx + shift)
    assert batched.shape[:2] == (5, 3)
    assert torch.allclose(batched[4], shared(shared.ctx + shift[4, 0]))


def test_word_initialised_context(tiny):
    learner = PromptLearner(tiny, ["cat"], None, ctx_init="a photo of a")
    assert learner.n_ctx == 4
    embed = tiny.token_embedding.weight
    assert torch.equal(learner.ctx.data, embed[ids("a photo of a")])
    maple_like = PromptLearner(tiny, ["cat"], 2, ctx_init="a photo of a")  # "of a" stays fixed
    assert maple_like.layout.token_ids[0, 1:5].tolist() == ids("a photo of a")
    assert maple_like.layout.soft_positions[0].tolist() == [1, 2]


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_text_features_equal_clip_encode_text(kind):
    """With the soft tokens set to the placeholder's embedding, the prompt is exactly the tokenised template."""
    model = make_tiny_clip(kind, seed=1).eval()
    names = ["golden_retriever", "cat"]
    for truncate in (True, False):
        learner = PromptLearner(model, names, 3, [("color", 2), ("playfulness", 1)], truncate=truncate)
        with torch.no_grad():
            for name, _ in learner.named_parameters():
                getattr(learner, name).copy_(model.token_embedding.weight[X].expand_as(getattr(learner, name)))
            ours = TextEncoder(model)(learner(), learner.eot)
            reference = model.encode_text(learner.layout.token_ids)
        assert torch.allclose(ours, reference, atol=1e-5), truncate


def test_text_feature_cache_follows_parameter_changes(tiny):
    model = PromptedCLIP(tiny, PromptLearner(tiny, ["cat", "dog"], 2, [("color", 2)]))
    with torch.no_grad():
        first = model.text_features()
        assert model.text_features() is first
        model.prompt_learner.ctx.add_(1.0)
        second = model.text_features()
    assert second is not first and not torch.allclose(first, second)
    assert model.text_features().requires_grad  # training always recomputes


def test_extra_state_records_the_layout(tiny):
    learner = PromptLearner(tiny, ["cat"], 2, [("color", 1), ("shape", 3)])
    state = learner.state_dict()
    assert state["_extra_state"] == {
        "attributes": ["color", "shape"],
        "n_att": [1, 3],
        "n_ctx": 2,
        "single_token_words": False,
        "class_position": "end",
        "csc": False,
        "anchor_len": 0,
    }
    assert "token_embeds" not in state
    other = PromptLearner(tiny, ["dog"], 2, [("size", 1), ("shape", 3)])
    with pytest.raises(UserError, match="attributes"):
        other.load_state_dict(state)
    with pytest.raises(UserError, match="class_position: checkpoint 'end', model 'front'"):
        PromptLearner(tiny, ["cat"], 2, [("color", 1), ("shape", 3)], class_position="front").load_state_dict(state)


def test_a_class_specific_context_fits_only_its_classes(tiny):
    state = PromptLearner(tiny, ["cat", "dog"], 2, csc=True).state_dict()
    assert state["_extra_state"]["classnames"] == ["cat", "dog"]
    PromptLearner(tiny, ["cat", "dog"], 2, csc=True).load_state_dict(state)
    with pytest.raises(UserError, match="class-specific context .* only fits the classes it was learned for"):
        PromptLearner(tiny, ["sea lion", "fox"], 2, csc=True).load_state_dict(state)


def make_cfg(*opts):
    cfg = get_cfg()
    cfg.merge_from_list(list(opts))
    return cfg


def test_attributes_from_cfg():
    assert attributes_from_cfg(make_cfg("DATASET.NAME", "Caltech101")) == []
    on = ("TRAINER.ATPROMPT.USE_ATPROMPT", True)
    assert attributes_from_cfg(make_cfg(*on, "DATASET.NAME", "Caltech101")) == [("shape", 4), ("size", 4)]
    assert attributes_from_cfg(make_cfg(*on, "DATASET.NAME", "ImageNetA")) == [("color", 4), ("shape", 4)]
    # explicit words win over the dataset's table (the original silently overwrote them)
    explicit = make_cfg(*on, "DATASET.NAME", "Caltech101", "TRAINER.ATPROMPT.ATT_NUM", 1,
                        "TRAINER.ATPROMPT.ATT1_TEXT", "color", "TRAINER.ATPROMPT.N_ATT1", 2)
    assert attributes_from_cfg(explicit) == [("color", 2)]
    many = make_cfg(*on, "TRAINER.ATPROMPT.ATTRIBUTES", "['a', 'b', 'c', 'd']", "TRAINER.ATPROMPT.N_ATTS", "[3]")
    assert attributes_from_cfg(many) == [("a", 3), ("b", 3), ("c", 3), ("d", 3)]
    assert attributes_from_cfg(make_cfg("DATASET.NAME", "Food101"), enabled=True)[0][0] == "flavor"
    with pytest.raises(UserError, match="has no attributes from the paper"):
        attributes_from_cfg(make_cfg(*on, "DATASET.NAME", "MyData"))
