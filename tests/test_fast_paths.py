"""Every speed-up gives the plain computation's numbers: logits and gradients, fp32 on the CPU.

Tolerance: rtol = atol = 1e-5 (TOL). The plain paths are the benchmark's (tools/benchmark.py): the full 77-token
context, text features recomputed for every batch, one text-encoder call per search candidate, CoCoOp's per-image
loop; so these tests also vouch that the benchmark compares like with like.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from tiny_clip import make_tiny_clip

from clip.model import MultiheadSelfAttention
from dassl.optim import build_optimizer
from tools.benchmark import Setup, cases, eval_bench, search_bench, train_bench
from trainers.prompting import PromptedCLIP, PromptLearner

TOL = dict(rtol=1e-5, atol=1e-5)
# Names of different token lengths, so the truncated length is set by one class only.
CLASSES = ["cat", "golden retriever", "sea lion", "great white shark with teeth"]
ATTRIBUTES = [("color", 2), ("playfulness", 1)]  # "playfulness" is two BPE tokens
CASE = {c.name: c for c in cases()}


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_clip("vit", seed=1).requires_grad_(False)


def make_setup(clip_model, search_chunk: int = 0) -> Setup:
    return Setup(clip_model, CLASSES, ATTRIBUTES, n_ctx=2, prec="fp32", device=torch.device("cpu"), batch=3,
                 eval_batches=2, search_chunk=search_chunk, seed=1)  # seed 0 leaves CoCoOp's meta-net with no live unit


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def text_lengths(clip_model, step) -> set[int]:
    """The sequence lengths the text transformer runs on during `step()`."""
    seen = set()
    handle = clip_model.transformer.register_forward_pre_hook(lambda _, args: seen.add(args[0].shape[0]))
    try:
        step()
    finally:
        handle.remove()
    return seen


def assert_same_grads(fast, plain) -> None:
    fast_grads, plain_grads = grads(fast), grads(plain)
    assert fast_grads and fast_grads.keys() == plain_grads.keys()
    for name, grad in fast_grads.items():
        assert grad.abs().max() > 0, name  # a gradient that could differ
        torch.testing.assert_close(grad, plain_grads[name], **TOL, msg=name)


def test_truncated_prompt_learner_equals_the_full_context(tiny):
    def model(truncate):
        torch.manual_seed(0)
        return PromptedCLIP(tiny, PromptLearner(tiny, CLASSES, 2, ATTRIBUTES, truncate=truncate))

    fast, full = model(True), model(False)
    assert full.prompt_learner().shape[-2] == 77 > fast.prompt_learner().shape[-2]
    images, labels = torch.randn(3, 3, 32, 32), torch.tensor([0, 3, 1])
    outputs = []
    for m in (fast, full):
        logits = m(images)
        F.cross_entropy(logits, labels).backward()
        outputs.append(logits)
    torch.testing.assert_close(outputs[0], outputs[1], **TOL)
    assert_same_grads(fast.prompt_learner, full.prompt_learner)


@pytest.mark.parametrize("name", ["coop-train", "maple-train", "dept-train", "kgcoop-train", "cocoop-train"])
def test_training_step_equals_the_plain_one(tiny, name):
    """Same logits, same gradients, hence the same parameters after the SGD step."""
    setup = make_setup(tiny)
    fast, plain = train_bench(CASE[name], setup, True), train_bench(CASE[name], setup, False)
    logits = {}
    assert max(text_lengths(tiny, lambda: logits.update(fast=fast.step()))) < 77
    assert text_lengths(tiny, lambda: logits.update(plain=plain.step())) == {77}
    torch.testing.assert_close(logits["fast"], logits["plain"], **TOL)
    assert_same_grads(fast.model, plain.model)
    for (n, p), q in zip(fast.model.named_parameters(), plain.model.parameters()):
        torch.testing.assert_close(p, q, **TOL, msg=n)


@pytest.mark.parametrize("chunk", [0, 7])
def test_search_step_equals_one_call_per_candidate(tiny, chunk):
    """Batched candidates (one call, or chunks of 7 prompts with recomputed activations) against one full-context
    call per candidate: prompt logits and gradients, then alpha's gradient from the validation batch."""
    setup = make_setup(tiny, search_chunk=chunk)
    fast, plain = search_bench(CASE["search"], setup, True), search_bench(CASE["search"], setup, False)
    logits = {}
    assert max(text_lengths(tiny, lambda: logits.update(fast=fast.step()))) < 77
    assert text_lengths(tiny, lambda: logits.update(plain=plain.step())) == {77}
    torch.testing.assert_close(logits["fast"], logits["plain"], **TOL)
    assert len(fast.model.prompt_learner.learners) == 31
    assert_same_grads(fast.model, plain.model)  # prompts (training batch) and alpha (validation batch)


@pytest.mark.parametrize("name", ["coop-eval", "maple-eval", "dept-eval", "kgcoop-eval", "cocoop-eval"])
def test_evaluation_equals_the_plain_one(tiny, name):
    setup = make_setup(tiny)
    fast, plain = eval_bench(CASE[name], setup, True), eval_bench(CASE[name], setup, False)
    torch.testing.assert_close(fast.step(), plain.step(), **TOL)


@pytest.mark.parametrize("name", ["coop-eval", "maple-eval", "dept-eval", "kgcoop-eval"])
def test_cached_text_features_equal_fresh_ones_and_follow_an_optimiser_step(tiny, name):
    setup = make_setup(tiny)
    model = eval_bench(CASE[name], setup, True).model
    fresh = eval_bench(CASE[name], setup, False).model  # same parameters, never caches
    with torch.no_grad():
        cached = model.text_features()
        assert model.text_features() is cached  # computed once
        torch.testing.assert_close(cached, fresh.text_features(), **TOL)

    params = [p for p in model.parameters() if p.requires_grad]
    optim = build_optimizer(params, setup.cfg(CASE[name].trainer).OPTIM)
    loss = F.cross_entropy(model(setup.images(3)), setup.labels(3))
    loss.backward()
    optim.step()
    with torch.no_grad():
        after = model.text_features()
        assert after is not cached and not torch.allclose(after, cached)
        model.cache_text = False
        torch.testing.assert_close(after, model.text_features(), **TOL)


@pytest.mark.parametrize("causal", [False, True])
def test_fused_attention_equals_explicit_softmax(causal):
    """clip.model's scaled_dot_product_attention against softmax(Q K^T / sqrt(d) + mask) V written out, with grads."""
    torch.manual_seed(0)
    width, heads, length, batch = 32, 4, 6, 3
    attn = MultiheadSelfAttention(width, heads)
    x = torch.randn(length, batch, width, requires_grad=True)
    out = attn(x, is_causal=causal)
    fused_grad = torch.autograd.grad(out.square().sum(), x)[0]

    def reference(x):
        q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(length, batch * heads, width // heads).transpose(0, 1) for t in (q, k, v))
        mask = torch.full((length, length), float("-inf")).triu(1) if causal else torch.zeros(length, length)
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(width // heads) + mask, dim=-1)
        merged = (weights @ v).transpose(0, 1).reshape(length, batch, width)
        return attn.out_proj(merged)

    expected = reference(x)
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(fused_grad, torch.autograd.grad(expected.square().sum(), x)[0], **TOL)
