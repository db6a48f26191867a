"""Prompted text features computed the plainest way, for the tests of deep-prompt methods (MaPLe, IVLP, PromptSRC):
one class at a time over the full 77 tokens, the class context written into each layer by hand."""

import torch
import torch.nn.functional as F

from clip.simple_tokenizer import SimpleTokenizer


def randomise(model: torch.nn.Module) -> None:
    """Non-trivial values for every prompt parameter (MaPLe's coupling layers, say, start as identical copies)."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for param in model.prompt_learner.parameters():
            param.copy_(0.3 * torch.randn(param.shape, generator=generator))


def reference_text(clip_model, learner, names, attributes, deep_text, depth: int) -> torch.Tensor:
    """`[A1] attr1 ... [ctx] name.` for each of `names`, the attribute blocks `learner.ctx_att<k>` and the context
    `learner.ctx`; layers 1 .. depth-1 replace the context with `deep_text[layer - 1]`."""
    tok = SimpleTokenizer()
    x_id, n_ctx = tok.encode("X")[0], learner.ctx.shape[0]
    features = []
    for name in names:
        ids, soft = [tok.encoder["<|startoftext|>"]], []
        for k, (word, n) in enumerate(attributes):
            soft += [(len(ids) + j, getattr(learner, f"ctx_att{k + 1}")[j]) for j in range(n)]
            ids += [x_id] * n + tok.encode(word)
        start = len(ids)
        soft += [(start + j, learner.ctx[j]) for j in range(n_ctx)]
        ids += [x_id] * n_ctx + tok.encode(name + ".") + [tok.encoder["<|endoftext|>"]]
        eot = len(ids) - 1
        x = clip_model.token_embedding(torch.tensor(ids + [0] * (77 - len(ids)))).clone()
        for position, vector in soft:
            x[position] = vector
        x = (x + clip_model.positional_embedding).unsqueeze(1)
        for i, block in enumerate(clip_model.transformer.resblocks):
            if 1 <= i < depth:
                x = x.clone()
                x[start : start + n_ctx, 0] = deep_text[i - 1]
            x = block(x)
        features.append(clip_model.ln_final(x[eot, 0]) @ clip_model.text_projection)
    return F.normalize(torch.stack(features), dim=-1)
