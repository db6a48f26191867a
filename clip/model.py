"""The CLIP architecture, weight-compatible with OpenAI's released checkpoints.

Module layout, attribute names and state-dict keys are those of OpenAI CLIP, so its checkpoints load strictly and
code written against it (``model.transformer``, ``model.visual.conv1``, sequence-first ``[L, N, D]`` transformer
inputs) keeps working. Attention runs through ``F.scaled_dot_product_attention``; the text transformer is causal
via ``is_causal=True`` instead of a fixed 77x77 mask, so it accepts any sequence length up to the context length.
Tokens after the last EOT never influence the pooled feature, so callers may truncate the sequence there.

Deep prompts (MaPLe-style) are injected at run time rather than through architecture variants:
- ``Transformer.forward(x, layer_hook)`` calls ``x = layer_hook(i, x)`` before residual block ``i`` (0-based, every
  block) with ``x`` sequence-first ``[L, N, D]``;
- ``VisionTransformer.forward(x, input_hook, layer_hook)`` calls ``x = input_hook(x)`` on the batch-first tokens
  ``[N, 1 + grid**2, width]`` once the positional embedding is added (before ``ln_pre``), so a caller can insert
  prompt tokens wherever it keeps them, and passes ``layer_hook`` to its transformer.
"""

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError

LayerHook = Callable[[int, torch.Tensor], torch.Tensor]
InputHook = Callable[[torch.Tensor], torch.Tensor]


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[L, N, C] -> [N, heads, L, C / heads], the layout scaled_dot_product_attention expects."""
    length, batch, width = x.shape
    return x.view(length, batch, heads, width // heads).permute(1, 2, 0, 3)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[N, heads, L, d] -> [L, N, heads * d]."""
    batch, heads, length, dim = x.shape
    return x.permute(2, 0, 1, 3).reshape(length, batch, heads * dim)


class MultiheadSelfAttention(nn.Module):
    """Self-attention with the parameters (and state-dict keys) of ``nn.MultiheadAttention``.

    Parameters are created and initialised in the same order as ``nn.MultiheadAttention`` so that building a
    model consumes the random number generator exactly as OpenAI's code does.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, is_causal: bool = False) -> torch.Tensor:
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (_split_heads(t, self.heads) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
        return self.out_proj(_merge_heads(out))


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back, so fp16 activations normalise stably."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


# OpenAI trained with QuickGELU; many open_clip checkpoints use the exact GELU instead. Neither has parameters, so
# the choice never changes the state-dict keys.
ACTIVATIONS: dict[str, type[nn.Module]] = {"quick_gelu": QuickGELU, "gelu": nn.GELU}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block on sequence-first input [L, N, D]."""

    def __init__(self, d_model: int, n_head: int, causal: bool = False, activation: str = "quick_gelu",
                 mlp_width: int | None = None):
        """``mlp_width`` None is OpenAI's 4 x ``d_model``."""
        super().__init__()
        mlp_width = mlp_width or d_model * 4
        self.attn = MultiheadSelfAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(d_model, mlp_width)),
                    ("gelu", _activation(activation)),
                    ("c_proj", nn.Linear(mlp_width, d_model)),
                ]
            )
        )
        self.ln_2 = LayerNorm(d_model)
        self.causal = causal

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, is_causal=self.causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, causal: bool = False, activation: str = "quick_gelu",
                 mlp_width: int | None = None):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.Sequential(
            *[ResidualAttentionBlock(width, heads, causal, activation, mlp_width) for _ in range(layers)]
        )

    def forward(self, x: torch.Tensor, layer_hook: LayerHook | None = None) -> torch.Tensor:
        """x: [L, N, D]. ``layer_hook(i, x) -> x``, when given, runs before block i for every i."""
        if layer_hook is None:
            return self.resblocks(x)
        for i, block in enumerate(self.resblocks):
            x = block(layer_hook(i, x))
        return x


class Bottleneck(nn.Module):
    """ResNet bottleneck whose stride is an average pool after conv2 (anti-aliased downsampling)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            # Key "-1" holds the parameterless pool, so the checkpoint keys are downsample.0 / downsample.1.
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride)),
                        ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False)),
                        ("1", nn.BatchNorm2d(planes * self.expansion)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return self.relu3(out + identity)


class AttentionPool2d(nn.Module):
    """Single multi-head attention whose query is the spatial mean token; returns that token's output."""

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int | None = None):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spacial_dim**2 + 1, embed_dim) / embed_dim**0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(start_dim=2).permute(2, 0, 1)  # [N, C, H, W] -> [HW, N, C]
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        x = x + self.positional_embedding[:, None, :].to(x.dtype)
        # Only the mean token's output is used, so only its query is computed.
        q = _split_heads(self.q_proj(x[:1]), self.num_heads)
        k = _split_heads(self.k_proj(x), self.num_heads)
        v = _split_heads(self.v_proj(x), self.num_heads)
        out = _merge_heads(F.scaled_dot_product_attention(q, k, v))
        return self.c_proj(out[0])


class ModifiedResNet(nn.Module):
    """ResNet with a 3-conv stem, anti-aliased strided blocks and an attention-pooling head."""

    def __init__(self, layers: tuple[int, ...], output_dim: int, heads: int, input_resolution: int = 224,
                 width: int = 64):
        super().__init__()
        self.output_dim = output_dim
        self.input_resolution = input_resolution

        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)

        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)

        embed_dim = width * 32
        self.attnpool = AttentionPool2d(input_resolution // 32, embed_dim, heads, output_dim)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.type(self.conv1.weight.dtype)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class VisionTransformer(nn.Module):
    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int,
                 activation: str = "quick_gelu", mlp_width: int | None = None):
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)

        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)

        self.transformer = Transformer(width, layers, heads, activation=activation, mlp_width=mlp_width)

        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x: torch.Tensor, input_hook: InputHook | None = None,
                layer_hook: LayerHook | None = None) -> torch.Tensor:
        """x: images [N, 3, H, W]. ``input_hook`` may change the embedded tokens [N, 1 + grid**2, width]."""
        x = self.conv1(x.type(self.conv1.weight.dtype))
        x = x.flatten(start_dim=2).permute(0, 2, 1)  # [N, grid**2, width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        if input_hook is not None:
            x = input_hook(x)
        x = self.ln_pre(x)

        x = self.transformer(x.permute(1, 0, 2), layer_hook).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class CLIP(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        # vision
        image_resolution: int,
        vision_layers: tuple[int, ...] | int,
        vision_width: int,
        vision_patch_size: int | None,
        # text
        context_length: int,
        vocab_size: int,
        transformer_width: int,
        transformer_heads: int,
        transformer_layers: int,
        # beyond OpenAI's layout (open_clip checkpoints); the defaults are OpenAI's
        activation: str = "quick_gelu",
        vision_heads: int | None = None,
        vision_mlp_width: int | None = None,
        transformer_mlp_width: int | None = None,
    ):
        """``vision_heads`` None is OpenAI's rule (64-wide heads); an MLP width None is 4 x the block width;
        ``activation`` ("quick_gelu" or "gelu") is used by the MLPs of both transformers."""
        super().__init__()
        self.context_length = context_length

        if isinstance(vision_layers, (tuple, list)):
            self.visual = ModifiedResNet(
                layers=tuple(vision_layers),
                output_dim=embed_dim,
                heads=vision_heads or vision_width * 32 // 64,
                input_resolution=image_resolution,
                width=vision_width,
            )
        else:
            self.visual = VisionTransformer(
                input_resolution=image_resolution,
                patch_size=vision_patch_size,
                width=vision_width,
                layers=vision_layers,
                heads=vision_heads or vision_width // 64,
                output_dim=embed_dim,
                activation=activation,
                mlp_width=vision_mlp_width,
            )

        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads, causal=True,
                                       activation=activation, mlp_width=transformer_mlp_width)

        self.vocab_size = vocab_size
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width)

        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

        self.initialize_parameters()

    def initialize_parameters(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)

        if isinstance(self.visual, ModifiedResNet):
            pool = self.visual.attnpool
            std = pool.c_proj.in_features**-0.5
            for linear in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
                nn.init.normal_(linear.weight, std=std)
            # Zero the last BN scale of every block so each residual branch starts as the identity.
            for stage in (self.visual.layer1, self.visual.layer2, self.visual.layer3, self.visual.layer4):
                for name, param in stage.named_parameters():
                    if name.endswith("bn3.weight"):
                        nn.init.zeros_(param)

        width, layers = self.transformer.width, self.transformer.layers
        proj_std = (width**-0.5) * ((2 * layers) ** -0.5)
        attn_std = width**-0.5
        fc_std = (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)

        nn.init.normal_(self.text_projection, std=width**-0.5)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def encode_image(self, image: torch.Tensor, input_hook: InputHook | None = None,
                     layer_hook: LayerHook | None = None) -> torch.Tensor:
        image = image.type(self.dtype)
        if isinstance(self.visual, VisionTransformer):
            return self.visual(image, input_hook, layer_hook)
        if input_hook is not None or layer_hook is not None:
            raise ValueError(
                "encode_image: input_hook and layer_hook need a ViT image encoder, but this CLIP has a ResNet; "
                "choose a ViT backbone (e.g. MODEL.BACKBONE.NAME ViT-B/16) for visual prompts"
            )
        return self.visual(image)

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """text: token ids [N, L] with L <= context_length; pooled at each row's EOT (its largest id)."""
        x = self.token_embedding(text).type(self.dtype)
        x = x + self.positional_embedding[: x.shape[1]].type(self.dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x).type(self.dtype)
        x = x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)]
        return x @ self.text_projection

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image_features = self.encode_image(image)
        text_features = self.encode_text(text)
        image_features = image_features / image_features.norm(dim=1, keepdim=True)
        text_features = text_features / text_features.norm(dim=1, keepdim=True)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


_HALF_TENSOR_NAMES = (
    "in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias", "bias_k", "bias_v",
    "text_projection", "proj",
)


def _half_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """{state-dict key: tensor} of the tensors OpenAI stores in half: conv/linear weights and biases, attention
    projections, ``text_projection`` and ``visual.proj``. Norms, embeddings and ``logit_scale`` are not among them."""
    found = {}
    for prefix, module in model.named_modules():
        names = ("weight", "bias") if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)) else ()
        for name in (*names, *_HALF_TENSOR_NAMES):
            tensor = getattr(module, name, None)
            if isinstance(tensor, torch.Tensor):
                found[f"{prefix}.{name}" if prefix else name] = tensor
    return found


def convert_weights(model: nn.Module) -> None:
    """Cast to fp16 exactly the tensors OpenAI stores in half (``_half_tensors``); the others stay fp32."""
    for tensor in _half_tensors(model).values():
        tensor.data = tensor.data.half()


def stored_in_half(state_dict: dict, model: nn.Module) -> bool:
    """Whether a checkpoint for ``model`` holds OpenAI's fp16 layout (every tensor OpenAI halves is fp16 in it), as
    OpenAI's releases do; open_clip's and most fine-tuned checkpoints are fp32."""
    keys = [key for key in _half_tensors(model) if key in state_dict]
    return bool(keys) and all(state_dict[key].dtype == torch.float16 for key in keys)


def _count_blocks(state_dict: dict, prefix: str) -> int:
    """Number of distinct block indices directly under ``prefix`` (e.g. "transformer.resblocks.")."""
    return len({key[len(prefix):].split(".")[0] for key in state_dict if key.startswith(prefix)})


def _mlp_width(state_dict: dict, prefix: str, width: int) -> dict:
    """{key: MLP width} when the blocks under ``prefix`` are not OpenAI's 4 x ``width`` wide (ViT-g and ViT-bigG
    are not), else {}."""
    fc = state_dict.get(prefix + "resblocks.0.mlp.c_fc.weight")
    if fc is None or fc.shape[0] == 4 * width:
        return {}
    key = "vision_mlp_width" if prefix.startswith("visual.") else "transformer_mlp_width"
    return {key: fc.shape[0]}


def infer_config(state_dict: dict) -> dict:
    """CLIP constructor arguments read off a checkpoint's tensor shapes and key names.

    MLP widths appear only when they differ from 4 x the block width, so OpenAI's checkpoints give exactly
    OpenAI's arguments. Head counts cannot be read off the weights: this gives OpenAI's (64-wide heads)."""
    if "visual.proj" in state_dict:
        conv1 = state_dict["visual.conv1.weight"]
        rows = state_dict["visual.positional_embedding"].shape[0]
        grid = round((rows - 1) ** 0.5)
        vision_layers = sum(1 for k in state_dict if k.startswith("visual.") and k.endswith(".attn.in_proj_weight"))
        vision = dict(vision_layers=vision_layers, vision_width=conv1.shape[0], vision_patch_size=conv1.shape[-1],
                      image_resolution=conv1.shape[-1] * grid,
                      **_mlp_width(state_dict, "visual.transformer.", conv1.shape[0]))
    else:
        rows = state_dict["visual.attnpool.positional_embedding"].shape[0]
        grid = round((rows - 1) ** 0.5)
        if grid**2 + 1 != rows:
            raise CheckpointError(f"visual.attnpool.positional_embedding has {rows} rows; expected grid**2 + 1")
        vision = dict(vision_layers=tuple(_count_blocks(state_dict, f"visual.layer{i}.") for i in range(1, 5)),
                      vision_width=state_dict["visual.layer1.0.conv1.weight"].shape[0], vision_patch_size=None,
                      image_resolution=grid * 32)
    width = state_dict["ln_final.weight"].shape[0]
    return dict(
        embed_dim=state_dict["text_projection"].shape[1],
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        transformer_width=width,
        transformer_heads=width // 64,
        transformer_layers=_count_blocks(state_dict, "transformer.resblocks."),
        **_mlp_width(state_dict, "transformer.", width),
        **vision,
    )


def build_model(state_dict: dict, design_details: dict | None = None, *, activation: str = "quick_gelu",
                vision_heads: int | None = None, transformer_heads: int | None = None,
                half: bool | None = True) -> CLIP:
    """Rebuild CLIP from an OpenAI-format state dict, in eval mode and, by default, in OpenAI's fp16 layout (see
    ``convert_weights``), as OpenAI's ``build_model`` does.

    ``half`` False keeps every tensor fp32; None keeps the checkpoint's precision: the fp16 layout when it is stored
    so (``stored_in_half``), else fp32, so that fp32 weights are never rounded.
    ``design_details`` (the upstream MaPLe/IVLP/VPT switches) is accepted so existing callers keep working, but the
    architecture never changes: deep prompts are added at run time through ``input_hook`` / ``layer_hook``.
    What the weights cannot tell comes from the other arguments, whose defaults are OpenAI's: the MLP activation and
    the head counts (None: 64-wide heads).
    """
    try:
        config = infer_config(state_dict)
    except KeyError as err:
        raise CheckpointError(f"build_model: key {err} is missing; this is not an OpenAI CLIP state dict") from err
    config["activation"] = activation
    config["vision_heads"] = vision_heads
    config["transformer_heads"] = transformer_heads or config["transformer_heads"]
    model = CLIP(**config)
    state_dict = {k: v for k, v in state_dict.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    if half or (half is None and stored_in_half(state_dict, model)):
        convert_weights(model)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"build_model: checkpoint does not match the CLIP architecture; missing keys {missing}, "
                         f"unexpected keys {unexpected}")
    return model.eval()
