"""clip.model against a plain reference computation written here from the state dict alone."""

import math

import pytest
import torch
import torch.nn.functional as F
from tiny_clip import example_inputs, make_tiny_clip
from torch import nn

from clip.model import CLIP, build_model, convert_weights, infer_config

SOT, EOT = 49406, 49407


def perturbed(model: CLIP, seed: int = 1) -> CLIP:
    """The model with every float tensor moved off its init (e.g. bn3 scales are zero at init)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or name == "logit_scale":
                continue
            noise = 0.05 * torch.randn(tensor.shape, generator=generator)
            tensor.copy_(tensor.abs() + 0.5 + noise.abs() if name.endswith("running_var") else tensor + noise)
    return model


# ---- reference computation -------------------------------------------------------------------------------------


def ref_layer_norm(x, sd, prefix):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + ".weight"], sd[prefix + ".bias"])


def ref_block(x, sd, prefix, heads, mask):
    """One pre-norm block on [L, N, D] using torch's own nn.MultiheadAttention."""
    width = x.shape[-1]
    mha = nn.MultiheadAttention(width, heads)
    mha.load_state_dict({k: sd[f"{prefix}.attn.{k}"] for k in mha.state_dict()})
    h = ref_layer_norm(x, sd, prefix + ".ln_1")
    x = x + mha(h, h, h, need_weights=False, attn_mask=mask)[0]
    h = ref_layer_norm(x, sd, prefix + ".ln_2")
    h = F.linear(h, sd[prefix + ".mlp.c_fc.weight"], sd[prefix + ".mlp.c_fc.bias"])
    h = h * torch.sigmoid(1.702 * h)
    return x + F.linear(h, sd[prefix + ".mlp.c_proj.weight"], sd[prefix + ".mlp.c_proj.bias"])


def ref_transformer(x, sd, prefix, heads, mask=None):
    layers = len({k.split(".")[len(prefix.split("."))] for k in sd if k.startswith(prefix + ".")})
    for i in range(layers):
        x = ref_block(x, sd, f"{prefix}.{i}", heads, mask)
    return x


def ref_encode_text(sd, text):
    width = sd["ln_final.weight"].shape[0]
    mask = torch.full((77, 77), float("-inf")).triu(1)
    x = sd["token_embedding.weight"][text] + sd["positional_embedding"]
    x = ref_transformer(x.permute(1, 0, 2), sd, "transformer.resblocks", width // 64, mask).permute(1, 0, 2)
    x = ref_layer_norm(x, sd, "ln_final")
    pooled = torch.stack([x[row, text[row].tolist().index(EOT)] for row in range(len(text))])
    return pooled @ sd["text_projection"]


def ref_encode_vit(sd, image, prompt=None):
    conv = sd["visual.conv1.weight"]
    width, patch = conv.shape[0], conv.shape[-1]
    x = F.conv2d(image, conv, stride=patch)
    tokens = [sd["visual.class_embedding"].expand(len(image), 1, width), x.flatten(2).transpose(1, 2)]
    x = torch.cat(tokens, dim=1) + sd["visual.positional_embedding"]
    if prompt is not None:
        x = torch.cat([x, prompt.expand(len(image), -1, -1)], dim=1)
    x = ref_layer_norm(x, sd, "visual.ln_pre")
    x = ref_transformer(x.permute(1, 0, 2), sd, "visual.transformer.resblocks", width // 64).permute(1, 0, 2)
    return ref_layer_norm(x[:, 0], sd, "visual.ln_post") @ sd["visual.proj"]


def ref_conv_bn(x, sd, conv, bn, stride=1, relu=True):
    weight = sd[conv + ".weight"]
    x = F.conv2d(x, weight, stride=stride, padding=weight.shape[-1] // 2)
    x = F.batch_norm(x, sd[bn + ".running_mean"], sd[bn + ".running_var"], sd[bn + ".weight"], sd[bn + ".bias"])
    return F.relu(x) if relu else x


def ref_bottleneck(x, sd, prefix, stride):
    out = ref_conv_bn(x, sd, prefix + ".conv1", prefix + ".bn1")
    out = ref_conv_bn(out, sd, prefix + ".conv2", prefix + ".bn2")
    if stride > 1:
        out = F.avg_pool2d(out, stride)
    out = ref_conv_bn(out, sd, prefix + ".conv3", prefix + ".bn3", relu=False)
    if prefix + ".downsample.0.weight" in sd:
        x = ref_conv_bn(F.avg_pool2d(x, stride), sd, prefix + ".downsample.0", prefix + ".downsample.1", relu=False)
    return F.relu(out + x)


def ref_encode_resnet(sd, image):
    x = ref_conv_bn(image, sd, "visual.conv1", "visual.bn1", stride=2)
    x = ref_conv_bn(x, sd, "visual.conv2", "visual.bn2")
    x = ref_conv_bn(x, sd, "visual.conv3", "visual.bn3")
    x = F.avg_pool2d(x, 2)
    for stage in range(1, 5):
        blocks = len({k.split(".")[2] for k in sd if k.startswith(f"visual.layer{stage}.")})
        for j in range(blocks):
            x = ref_bottleneck(x, sd, f"visual.layer{stage}.{j}", stride=2 if stage > 1 and j == 0 else 1)
    x = x.flatten(2).permute(2, 0, 1)
    x = torch.cat([x.mean(dim=0, keepdim=True), x]) + sd["visual.attnpool.positional_embedding"][:, None]
    p = "visual.attnpool."
    width = x.shape[-1]
    out, _ = F.multi_head_attention_forward(
        x, x, x, width, width // 64, None,
        torch.cat([sd[p + "q_proj.bias"], sd[p + "k_proj.bias"], sd[p + "v_proj.bias"]]), None, None, False, 0.0,
        sd[p + "c_proj.weight"], sd[p + "c_proj.bias"], use_separate_proj_weight=True,
        q_proj_weight=sd[p + "q_proj.weight"], k_proj_weight=sd[p + "k_proj.weight"],
        v_proj_weight=sd[p + "v_proj.weight"], need_weights=False,
    )
    return out[0]


def close(actual, expected, tol=1e-5):
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


# ---- tests -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_encoders_and_logits_match_reference(kind):
    # At 64 px the ResNet's attention pool sees a 2x2 grid plus the mean token, not a single position.
    model = perturbed(make_tiny_clip(kind, image_resolution=64 if kind == "rn" else 32))
    sd = model.state_dict()
    image, text = example_inputs(model, batch=3)
    with torch.no_grad():
        image_features, text_features = model.encode_image(image), model.encode_text(text)
        logits_per_image, logits_per_text = model(image, text)
        ref_image = ref_encode_vit(sd, image) if kind == "vit" else ref_encode_resnet(sd, image)
        ref_text = ref_encode_text(sd, text)
    close(image_features, ref_image)
    close(text_features, ref_text)
    ref_image, ref_text = F.normalize(ref_image, dim=-1), F.normalize(ref_text, dim=-1)
    close(logits_per_image, sd["logit_scale"].exp() * ref_image @ ref_text.t())
    assert math.isclose(sd["logit_scale"].exp().item(), 1 / 0.07, rel_tol=1e-3)  # OpenAI's init
    close(logits_per_text, logits_per_image.t())
    assert logits_per_image.shape == (3, 3)


def test_text_truncated_after_last_eot_gives_same_features():
    model = perturbed(make_tiny_clip("vit"))
    _, text = example_inputs(model, batch=3)
    end = int(text.argmax(dim=-1).max()) + 1
    assert end < 77
    with torch.no_grad():
        full, short = model.encode_text(text), model.encode_text(text[:, :end])
    # Only fp32 summation order differs with the sequence length (up to ~1e-6 on some CPU kernels).
    close(short, full)


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [
        ("vit", {}),
        ("vit", dict(vision_width=128, vision_layers=3, vision_patch_size=16, image_resolution=64, embed_dim=48,
                     transformer_width=128, transformer_heads=2, transformer_layers=3, context_length=20,
                     vocab_size=300)),
        ("rn", {}),
        ("rn", dict(vision_layers=(1, 2, 1, 2), vision_width=8, image_resolution=64, embed_dim=24)),
    ],
)
def test_build_model_infers_every_size(kind, overrides):
    model = make_tiny_clip(kind, **overrides)
    sd = model.state_dict()
    expected = dict(embed_dim=32, image_resolution=32, context_length=77, vocab_size=49408, transformer_width=64,
                    transformer_heads=1, transformer_layers=2)
    if kind == "vit":
        expected.update(vision_layers=2, vision_width=64, vision_patch_size=8)
    else:
        expected.update(vision_layers=(1, 1, 1, 1), vision_width=16, vision_patch_size=None)
    expected.update(overrides)
    assert infer_config(sd) == expected

    rebuilt = build_model(sd)
    assert not rebuilt.training
    assert rebuilt.dtype == torch.float16
    assert rebuilt.visual.input_resolution == expected["image_resolution"]
    rebuilt_sd = rebuilt.float().state_dict()
    assert list(rebuilt_sd) == list(sd)
    for key, tensor in sd.items():
        assert torch.equal(rebuilt_sd[key], tensor), key  # tiny weights are fp16-representable


def test_build_model_leaves_input_alone_and_drops_legacy_keys():
    sd = make_tiny_clip("vit").state_dict()
    sd["input_resolution"] = torch.tensor(32)
    build_model(sd)
    assert "input_resolution" in sd


def test_build_model_rejects_foreign_state_dicts():
    sd = make_tiny_clip("vit").state_dict()
    with pytest.raises(ValueError, match="text_projection"):
        build_model({k: v for k, v in sd.items() if k != "text_projection"})
    with pytest.raises(ValueError, match="unexpected keys.*extra"):
        build_model({**sd, "extra": torch.zeros(1)})


def is_half_in_openai_checkpoints(key: str) -> bool:
    """The §1.5 rule spelled out on key names."""
    name = key.split(".")[-1]
    if key in ("text_projection", "visual.proj"):
        return True
    if ".attn.in_proj_" in key or ".attn.out_proj." in key or ".mlp.c_" in key:
        return True
    if ".attnpool." in key and name in ("weight", "bias"):
        return True  # q/k/v/c_proj linears
    module = key.split(".")[-2] if "." in key else ""
    return name == "weight" and (module.startswith("conv") or key.endswith("downsample.0.weight"))


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_convert_weights_halves_exactly_the_openai_tensors(kind):
    model = make_tiny_clip(kind)
    convert_weights(model)
    sd = model.state_dict()
    half = {k for k, v in sd.items() if v.dtype == torch.float16}
    assert half == {k for k in sd if is_half_in_openai_checkpoints(k)}
    assert {v.dtype for k, v in sd.items() if k not in half} <= {torch.float32, torch.int64}
    assert sd["logit_scale"].dtype == torch.float32
    assert sd["token_embedding.weight"].dtype == torch.float32
    assert model.dtype == torch.float16


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_fp16_model_runs_and_stays_close_to_fp32(kind):
    model = make_tiny_clip(kind)
    half = build_model(model.state_dict())
    image, text = example_inputs(model)
    with torch.no_grad():
        ref_logits, logits = model(image, text)[0], half(image, text)[0]
    assert logits.dtype == torch.float16
    close(logits.float(), ref_logits, tol=2e-2)


def test_layer_hook_sees_every_block_and_identity_changes_nothing():
    model = perturbed(make_tiny_clip("vit", transformer_layers=3))
    image, text = example_inputs(model)
    calls = []

    def record(i, x):
        calls.append((i, tuple(x.shape)))
        return x

    with torch.no_grad():
        x = model.token_embedding(text) + model.positional_embedding
        plain = model.transformer(x.permute(1, 0, 2))
        hooked = model.transformer(x.permute(1, 0, 2), layer_hook=record)
        assert calls == [(i, (77, 2, 64)) for i in range(3)]
        assert torch.equal(hooked, plain)

        calls.clear()
        plain_image = model.encode_image(image)
        hooked_image = model.encode_image(image, layer_hook=record)
        assert calls == [(0, (17, 2, 64)), (1, (17, 2, 64))]
        assert torch.equal(hooked_image, plain_image)

        def shift_second(i, x):
            return x + 1.0 if i == 1 else x

        assert not torch.allclose(model.encode_image(image, layer_hook=shift_second), plain_image)


def test_layer_hook_output_feeds_the_next_block():
    model = perturbed(make_tiny_clip("vit"))
    sd = model.state_dict()
    x = torch.randn(77, 2, 64)
    replacement = torch.randn(3, 2, 64)

    def replace(i, x):
        return torch.cat([x[:1], replacement, x[4:]]) if i == 1 else x

    mask = torch.full((77, 77), float("-inf")).triu(1)
    with torch.no_grad():
        expected = ref_block(x, sd, "transformer.resblocks.0", 1, mask)
        expected = ref_block(replace(1, expected), sd, "transformer.resblocks.1", 1, mask)
        close(model.transformer(x, layer_hook=replace), expected)


def test_input_hook_sees_the_embedded_tokens_before_ln_pre():
    model = perturbed(make_tiny_clip("vit"))
    sd = model.state_dict()
    image, _ = example_inputs(model, batch=3)
    prompt = torch.randn(4, 64)
    seen, inputs = [], []

    def append(x):
        inputs.append(x.shape)
        return torch.cat([x, prompt.expand(len(x), -1, -1)], dim=1)

    with torch.no_grad():
        shared = model.encode_image(image, append, layer_hook=lambda i, x: seen.append(x.shape) or x)
        close(shared, ref_encode_vit(sd, image, prompt))
        assert torch.equal(model.encode_image(image, lambda x: x), model.encode_image(image))
        assert not torch.allclose(shared, model.encode_image(image))
    assert inputs == [torch.Size([3, 17, 64])]
    assert seen == [torch.Size([17 + 4, 3, 64])] * 2


def test_resnet_rejects_visual_prompts():
    model = make_tiny_clip("rn")
    image, _ = example_inputs(model)
    with pytest.raises(ValueError, match="ViT"):
        model.encode_image(image, lambda x: x)
    with pytest.raises(ValueError, match="ViT"):
        model.encode_image(image, layer_hook=lambda i, x: x)


def test_tiny_models_are_deterministic_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = make_tiny_clip("vit", seed=3), make_tiny_clip("vit", seed=3), make_tiny_clip("vit", seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert not torch.equal(a.text_projection, c.text_projection)
    assert all(p.dtype == torch.float32 for p in a.parameters())
