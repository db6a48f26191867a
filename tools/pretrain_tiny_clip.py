"""Pretrain the tiny CLIP that ships with the attribute world (``clip/weights/tiny_clip_attribute_world.pt``).

A small ViT CLIP (same architecture code and tokenizer as the full models) is trained contrastively on freshly
rendered attribute-world images paired with captions that name the object and describe its colour, shape, size
and pattern. Pretraining images come from their own random stream, in clear weather; the benchmark's
train/val/test images are never seen, and neither is their fog.

Run from the repository root (about 5 minutes on 2 CPU cores, see docs/ATTRIBUTE_WORLD.md):

    python tools/pretrain_tiny_clip.py

The checkpoint is a plain OpenAI-format state dict in fp16 (``clip.load(path)`` reads it). It is written only if the
reloaded model's zero-shot accuracy ("a photo of a {}.") on the benchmark's test split is at least three times
chance on both the base and the new classes, so a reproduced checkpoint is known to be good.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from string import Formatter

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import clip  # noqa: E402
from clip.model import CLIP  # noqa: E402
from datasets.attribute_world import IMAGE_SIZE, IMAGES_PER_CLASS, WORLD_SEED, benchmark_image  # noqa: E402
from datasets.attribute_world_render import CLASSES, SHAPE_ADJECTIVES, WorldClass, render  # noqa: E402

DEFAULT_OUTPUT = "clip/weights/tiny_clip_attribute_world.pt"
EVAL_TEMPLATE = "a photo of a {name}."
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# ViT with 8x8 patches on 32x32 images; text width 64 keeps the 49408-token embedding (most of the file) small.
ARCH = dict(embed_dim=64, image_resolution=IMAGE_SIZE, vision_layers=4, vision_width=128, vision_patch_size=8,
            context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=4)

# Caption templates. The fields a template mentions are what it claims about the image; any image whose class agrees
# on all of them counts as a match in the contrastive loss. The words "color", "shape", "size" and "pattern" appear
# too, so attribute-anchored prompts start from meaningful word embeddings.
TEMPLATES = (
    EVAL_TEMPLATE,
    "a {name}.",
    "a picture of a {name}.",
    "a photo of the {name}.",
    "a {color} {name}.",
    "a {size} {name}.",
    "a {pattern} {name}.",
    "a {name}, which is {color} and {shape_adjective}.",
    "a {color} {shape}.",
    "a {size} {color} {shape}.",
    "a {color} {pattern} {shape}.",
    "a {size} {color} {pattern} {shape}.",
    "a {shape}.",
    "a {pattern} {shape}.",
    "something {color}.",
    "a {name} with {color} color and {shape} shape.",
    "an object of {color} color.",
    "an object of {shape} shape.",
    "an object of {size} size.",
    "an object with a {pattern} pattern.",
    "a {color} colored {shape_adjective} {name}.",
    "a {size} {pattern} {color} {shape} that looks like a {name}.",
    "a photo of a {color} {shape}.",
)


def claims(template: str) -> set[str]:
    """The class attributes a template states ("name" for the object name)."""
    fields = {field for _, field, _, _ in Formatter().parse(template) if field}
    return {"shape" if field == "shape_adjective" else field for field in fields}


def caption(template: str, cls: WorldClass) -> str:
    text = template.format(name=cls.name, color=cls.color, shape=cls.shape, size=cls.size, pattern=cls.pattern,
                           shape_adjective=SHAPE_ADJECTIVES[cls.shape])
    if template == EVAL_TEMPLATE:  # kept verbatim: it is the zero-shot and CoOp initialisation prompt
        return text
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def caption_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens of every (template, class) caption [T, C, L] and agree[t, i, j]: template t of class j fits class i."""
    tokens = torch.stack([clip.tokenize([caption(t, cls) for cls in CLASSES]) for t in TEMPLATES])
    length = int(tokens.argmax(dim=-1).max()) + 1  # text is causal: positions after the last EOT never matter
    agree = torch.tensor([[[all(getattr(a, f) == getattr(b, f) for f in claims(t)) for b in CLASSES]
                           for a in CLASSES] for t in TEMPLATES])
    return tokens[..., :length], agree


def to_tensor(images: list) -> torch.Tensor:
    """PIL images -> normalised float batch, as the test transform (Resize/CenterCrop are no-ops at this size)."""
    x = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


def render_split(stream: str, per_class: int, labels: range | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The pretraining images (clear weather), or the benchmark's foggy train / val / test images."""
    if stream == "pretrain":
        images = [render(label, i, stream, WORLD_SEED, IMAGE_SIZE) for label in labels for i in range(per_class)]
    else:
        images = [benchmark_image(label, stream, i) for label in labels for i in range(per_class)]
    return to_tensor(images), torch.tensor([label for label in labels for _ in range(per_class)])


@torch.no_grad()
def zero_shot_accuracy(model: CLIP, images: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> float:
    """Accuracy of "a photo of a {name}." classification among ``classes`` (the labels of ``images``)."""
    text = clip.tokenize([caption(EVAL_TEMPLATE, CLASSES[c]) for c in classes])
    text_features = F.normalize(model.encode_text(text).float(), dim=-1)
    image_features = F.normalize(model.encode_image(images).float(), dim=-1)
    predicted = torch.tensor(classes)[(image_features @ text_features.t()).argmax(dim=1)]
    return (predicted == labels).float().mean().item()


def base_new_accuracy(model: CLIP, stream: str, per_class: int) -> tuple[float, float]:
    """Zero-shot accuracy on the base (first half) and new (second half) classes, each among its own half."""
    half = math.ceil(len(CLASSES) / 2)
    accuracies = []
    for classes in (list(range(half)), list(range(half, len(CLASSES)))):
        images, labels = render_split(stream, per_class, classes)
        accuracies.append(zero_shot_accuracy(model, images, labels, classes))
    return accuracies[0], accuracies[1]


def contrastive_loss(logits: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where every caption that fits an image (not just its own) is a positive."""
    match = match.float()
    image_to_text = -(match / match.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    text_to_image = -(match.t() / match.t().sum(1, keepdim=True) * logits.t().log_softmax(1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


def train(args: argparse.Namespace) -> CLIP:
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    model = CLIP(**ARCH)
    tokens, agree = caption_tables()

    start = time.time()
    pool, pool_labels = render_split("pretrain", args.images_per_class, range(len(CLASSES)))
    print(f"Rendered {len(pool)} pretraining images in {time.time() - start:.0f}s")

    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    warmup = min(200, args.steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * s / args.steps)))

    for step in range(1, args.steps + 1):
        model.train()
        index = torch.randint(len(pool), (args.batch_size,), generator=generator)
        labels = pool_labels[index]
        templates = torch.randint(len(TEMPLATES), (args.batch_size,), generator=generator)
        images = pool[index]
        flip = torch.rand(args.batch_size, generator=generator) < 0.5
        images[flip] = images[flip].flip(-1)
        # match[i, j]: caption j (template t_j of class c_j) fits image i of class c_i.
        match = agree[templates[None, :], labels[:, None], labels[None, :]]

        image_features = F.normalize(model.encode_image(images), dim=-1)
        text_features = F.normalize(model.encode_text(tokens[templates, labels]), dim=-1)
        loss = contrastive_loss(model.logit_scale.exp() * image_features @ text_features.t(), match)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))

        if step % args.log_every == 0 or step == args.steps:
            model.eval()
            base, new = base_new_accuracy(model, "val", IMAGES_PER_CLASS["val"])
            print(f"step {step}/{args.steps}  loss {loss.item():.3f}  val zero-shot base {base:.1%} new {new:.1%}  "
                  f"({time.time() - start:.0f}s)", flush=True)
    return model


def save_checked(model: CLIP, output: str) -> None:
    """Save in fp16, reload with clip.load and keep the file only if it clears 3x chance on base and new."""
    state_dict = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = output + ".partial"
    try:
        torch.save(state_dict, tmp)
        reloaded, _ = clip.load(tmp, device="cpu")
        base, new = base_new_accuracy(reloaded, "test", IMAGES_PER_CLASS["test"])
        chance = 1 / math.ceil(len(CLASSES) / 2)
        print(f"Test zero-shot accuracy of the saved weights: base {base:.1%}, new {new:.1%} (chance {chance:.1%})")
        if min(base, new) < 3 * chance:
            raise SystemExit(f"Zero-shot accuracy is below 3x chance ({3 * chance:.1%}); not saving {output}. "
                             f"Train longer (--steps) or check the renderer.")
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"Saved {output} ({os.path.getsize(output) / 2**20:.1f} MiB)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="where to write the state dict")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--images-per-class", type=int, default=400, help="size of the rendered pretraining pool")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=250)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    model = train(args)
    save_checked(model.eval(), args.output)
    print(f"Total time {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
