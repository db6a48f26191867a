"""The BPE tokenizer and clip.tokenize against ids produced by OpenAI's reference tokenizer."""

import gzip
import hashlib

import pytest
import torch

import clip
from clip.simple_tokenizer import DEFAULT_BPE_PATH, SimpleTokenizer, bytes_to_unicode

SOT, EOT = 49406, 49407

# Expected ids were produced by OpenAI's original tokenizer on the same vocabulary file.
GOLDEN = {
    "a photo of a flower.": [320, 1125, 539, 320, 4055, 269],
    "X X shape X X size X X face.": [343, 343, 6448, 343, 343, 3235, 343, 343, 1710, 269],
    "golden_retriever": [3878, 318, 28394],
    "playfulness": [1222, 10526],
    "technique": [1782, 697, 2319],
    "Café naïve résumé — déjà vu": [15304, 1097, 35689, 563, 29106, 7054, 4166, 2005, 25466, 73, 21259, 13230],
    "I'm sure they'll say it's the dog's toy, isn't it? We've, you'd, they're": [
        328, 880, 1650, 889, 1342, 1451, 585, 568, 518, 1929, 568, 5988, 267, 2923, 713, 585, 286, 649, 1200, 267,
        592, 1896, 267, 889, 982,
    ],
    "a photo of a 🐶 with ❤️ and 👨\u200d👩\u200d👧": [
        320, 1125, 539, 320, 10631, 593, 1752, 537, 25023, 26304, 964, 356,
    ],
    "日本語のテキスト 中文 한국어": [
        39121, 44353, 34002, 252, 21575, 2429, 228, 47121, 32421, 486, 19759, 255, 29032, 485, 15197, 250, 31871, 255,
        31625, 368,
    ],
    "fish &amp;amp; chips &lt;b&gt; &quot;quoted&quot; &#39;x&#39;": [
        2759, 261, 8855, 283, 321, 285, 257, 27706, 257, 262, 343, 262,
    ],
    "  tabs\tand\nnewlines\r\n   and   many    spaces  ": [29163, 537, 1218, 3418, 537, 1346, 9006],
    "Model 3 costs $35,000 in 2019 (99.9%)": [
        2863, 274, 7628, 259, 274, 276, 267, 271, 271, 271, 530, 273, 271, 272, 280, 263, 280, 280, 269, 280, 16063,
    ],
    "wait...!!! ??? --- ((nested)) [brackets] {braces} @#$%^&*": [
        1885, 38351, 3824, 11079, 13796, 557, 1356, 5167, 314, 36183, 316, 346, 19249, 348, 31, 2, 3, 4, 61, 5, 265,
    ],
    "golden_retriever Yorkshire_Terrier 747-400": [
        3878, 318, 28394, 8633, 318, 14455, 278, 275, 278, 268, 275, 271, 271,
    ],
    "HTML <|startoftext|> and <|endoftext|> literal": [18231, 49406, 537, 49407, 24269],
    "Ã©tÃ© mojibake": [3459, 39694, 617, 3252, 11878],
    "ＦＵＬＬＷＩＤＴＨ ﬁ ligature ½": [9407, 23571, 3589, 19915, 4490, 33613],
}
PANGRAM = "the quick brown fox jumps over the lazy dog"
PANGRAM_IDS = [518, 3712, 2866, 3240, 18911, 962, 518, 10753, 1929]


@pytest.fixture(scope="module")
def tokenizer():
    return SimpleTokenizer()


def test_vocabulary_file_is_the_standard_one():
    digest = hashlib.sha256(DEFAULT_BPE_PATH.read_bytes()).hexdigest()
    assert digest == "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
    with gzip.open(DEFAULT_BPE_PATH, "rt", encoding="utf-8") as file:
        assert file.readline().startswith('"bpe_simple_vocab_16e6.txt#version')


def test_byte_table_and_vocabulary_layout(tokenizer):
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    same = [b for b, c in table.items() if ord(c) == b]
    assert len(same) == 188 and chr(same[0]) == "!" and chr(same[-1]) == "ÿ"
    assert [ord(table[b]) for b in range(256) if b not in same] == list(range(256, 256 + 68))
    assert len(tokenizer.encoder) == 49408 and len(tokenizer.bpe_ranks) == 48894
    assert tokenizer.encoder["!"] == 0 and tokenizer.encoder["!</w>"] == 256
    assert tokenizer.encoder["<|startoftext|>"] == SOT and tokenizer.encoder["<|endoftext|>"] == EOT
    assert tokenizer.encoder["x</w>"] == 343 and tokenizer.encoder[".</w>"] == 269


@pytest.mark.parametrize("text", list(GOLDEN))
def test_encode_matches_openai_ids(tokenizer, text):
    assert tokenizer.encode(text) == GOLDEN[text]


@pytest.mark.parametrize("text", list(GOLDEN))
def test_decode_round_trip(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.encode(tokenizer.decode(ids)) == ids


def test_decode_text(tokenizer):
    assert tokenizer.decode([SOT, 320, 1125, 539, 320, 4055, 269, EOT]) == (
        "<|startoftext|>a photo of a flower . <|endoftext|>"
    )
    assert tokenizer.decode(tokenizer.encode("Café 🐶 日本語")) == "café 🐶 日本語 "


def test_tokenize_pads_with_zeros_as_int64():
    tokens = clip.tokenize(["a photo of a flower.", "X X shape X X size X X face."])
    assert tokens.dtype == torch.int64 and tokens.shape == (2, 77)
    assert tokens[0, :8].tolist() == [SOT, 320, 1125, 539, 320, 4055, 269, EOT]
    assert tokens[1, :12].tolist() == [SOT, 343, 343, 6448, 343, 343, 3235, 343, 343, 1710, 269, EOT]
    assert not tokens[0, 8:].any() and not tokens[1, 12:].any()
    assert tokens.argmax(dim=-1).tolist() == [7, 11]  # EOT is the largest id, so argmax finds it
    assert torch.equal(clip.tokenize("a photo of a flower."), tokens[:1])
    assert clip.tokenize("a photo", context_length=5).tolist() == [[SOT, 320, 1125, EOT, 0]]


def test_tokenize_length_limit():
    assert clip.tokenize("x " * 75)[0, -1].item() == EOT  # 75 ids + start + end fill the context exactly
    with pytest.raises(RuntimeError, match="truncate=True"):
        clip.tokenize("x " * 76)


def test_tokenize_truncate_keeps_the_start_and_ends_with_eot():
    text = " ".join([PANGRAM] * 12)
    with pytest.raises(RuntimeError, match="context length 77"):
        clip.tokenize(text)
    row = clip.tokenize(text, truncate=True)[0].tolist()
    assert row == [SOT, *(PANGRAM_IDS * 9)[:75], EOT]
    short = clip.tokenize("a photo of a flower.", truncate=True)
    assert torch.equal(short, clip.tokenize("a photo of a flower."))
