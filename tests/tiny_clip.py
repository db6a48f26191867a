"""Tiny random CLIP models and their two checkpoint forms, for tests.

The models follow OpenAI's initialisation but every floating tensor is rounded to an fp16-representable value, as
in the released checkpoints. ``build_model`` stores the converted tensors in fp16, so a saved tiny model reloads
(``clip.load`` on CPU, or ``build_model(...).float()``) to exactly the same fp32 numbers.
"""

import warnings

import torch

from clip.model import CLIP

_TEXT = dict(embed_dim=32, image_resolution=32, context_length=77, vocab_size=49408, transformer_width=64,
             transformer_heads=1, transformer_layers=2)
_VISION = {
    "vit": dict(vision_layers=2, vision_width=64, vision_patch_size=8),
    "rn": dict(vision_layers=(1, 1, 1, 1), vision_width=16, vision_patch_size=None),
}


def make_tiny_clip(kind: str = "vit", seed: int = 0, **overrides) -> CLIP:
    """An fp32 CLIP in eval mode with tiny widths; ``kind`` is "vit" or "rn"; overrides go to ``CLIP(...)``."""
    if kind not in _VISION:
        raise ValueError(f"make_tiny_clip: unknown kind {kind!r}; use one of {sorted(_VISION)}")
    config = {**_TEXT, **_VISION[kind], **overrides}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**config)
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return model.eval()


def example_inputs(model: CLIP, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (image, token ids) inputs matching ``model``'s resolution and context length."""
    generator = torch.Generator().manual_seed(0)
    size = model.visual.input_resolution
    image = torch.randn(batch, 3, size, size, generator=generator)
    text = torch.zeros(batch, model.context_length, dtype=torch.long)
    for row in range(batch):
        length = 3 + 2 * row
        text[row, 0] = 49406
        text[row, 1:length] = torch.randint(1, 49405, (length - 1,), generator=generator)
        text[row, length] = 49407
    return image, text


def save_state_dict(model: CLIP, path) -> None:
    torch.save(model.state_dict(), path)


def save_torchscript(model: CLIP, path) -> None:
    """A traced TorchScript archive on (image, text), the form of OpenAI's released files."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit", category=FutureWarning)
        traced = torch.jit.trace(model, example_inputs(model), check_trace=False)
        torch.jit.save(traced, str(path))
