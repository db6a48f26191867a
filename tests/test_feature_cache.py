"""The feature cache (dassl/engine/feature_cache.py): cached evaluation gives the uncached logits; what decides a
feature decides its entry; runs may fill it at once; damaged entries are recomputed."""

import multiprocessing
import re
from pathlib import Path

import pytest
import torch
from fake_data import build_from, perturb, run_args
from PIL import Image
from torch.utils.data import DataLoader

import train
from dassl.engine.feature_cache import draw_as_iterating, file_digest, weights_checksum
from dassl.engine.feature_store import DAMAGED, FeatureStore, decode_entry
from dassl.engine.records import settings_of
from dassl.engine.trainer import SimpleTrainer
from tools import benchmark_cache, run_protocol
from tools import feature_cache as cache_tool
from trainers.config import get_cfg

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "CoOp": "CoOp/vit_b16.yaml",
    "CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1.yaml",
    "DePT": "DePT/vit_b16_ep10_bs4_lr35.yaml",
    "KgCoOp": "KgCoOp/vit_b16_ep100_ctxv4.yaml",
    "ZeroshotCLIP": "CoOp/vit_b16.yaml",
    "MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
    "IVLP": "IVLP/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "PromptSRC": "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
}
REPORT = re.compile(r"Feature cache: (\d+) of (\d+) test image features from the cache, (\d+) computed")


@pytest.fixture(scope="module")
def anchor(original_anchor_path):
    return original_anchor_path


def build(data_root, tmp_path, clip_path, trainer="CoOp", *opts, cache=True, subsample="base"):
    options = ["FEATURE_CACHE.ENABLED", str(cache), "FEATURE_CACHE.DIR", str(tmp_path / "cache"),
               "DATASET.SUBSAMPLE_CLASSES", subsample, "TRAINER.MAPLE.PROMPT_DEPTH", "1", *opts]
    return build_from(run_args(data_root, tmp_path / "out", trainer, clip_path, CONFIGS[trainer], *options))


def anchored(anchor, *opts) -> list[str]:
    return ["TRAINER.ANCHOROPT.USE_ANCHOROPT", "True", "TRAINER.ANCHOROPT.N_CTX", "2",
            "TRAINER.ANCHOROPT.ANCHOR_WEIGHTS", str(anchor), *opts]


@torch.no_grad()
def evaluate(trainer, cached: bool = True) -> torch.Tensor:
    """The logits of the test set, from the cache or as without it."""
    trainer.set_model_mode("eval")
    run = trainer.evaluation_outputs if cached else lambda *a: SimpleTrainer.evaluation_outputs(trainer, *a)
    outputs, labels = zip(*run(trainer.test_loader, "test"))
    return torch.cat(outputs)


def counts(capsys) -> tuple[int, int]:
    """(from the cache, computed) of the last evaluation's report."""
    found = REPORT.findall(capsys.readouterr().out)
    assert found, "no feature-cache report"
    hits, total, computed = map(int, found[-1])
    assert hits + computed == total
    return hits, computed


def entries(tmp_path) -> list:
    return sorted((tmp_path / "cache").rglob("*.feat"))


@pytest.mark.parametrize("method", ["CoOp", "CoCoOp", "DePT", "KgCoOp", "ZeroshotCLIP"])
def test_cached_evaluation_gives_the_uncached_logits(tmp_path, data_root, tiny_vit_path, capsys, method):
    trainer = build(data_root, tmp_path, tiny_vit_path, method)
    perturb(trainer.model if hasattr(trainer, "model") else trainer.clip_model.visual.conv1)
    plain = evaluate(trainer, cached=False)
    cold = evaluate(trainer)
    assert counts(capsys) == (0, 9)
    warm = evaluate(trainer)
    assert counts(capsys) == (9, 0)
    assert torch.equal(cold, plain)  # a cold cache computes the loader's batches: bit for bit
    assert torch.equal(warm, plain)
    assert len(entries(tmp_path)) == 9


@pytest.mark.parametrize("subsample", ["base", "new"])
@pytest.mark.parametrize("method", ["CoOp", "CoCoOp", "DePT", "KgCoOp"])
def test_anchoropt_models_give_the_uncached_logits(tmp_path, data_root, tiny_vit_path, anchor, capsys, method,
                                                   subsample):
    trainer = build(data_root, tmp_path, tiny_vit_path, method, *anchored(anchor), subsample=subsample)
    assert trainer.model.seen_classes == (subsample == "base")  # new classes: the anchor branch is averaged in
    perturb(trainer.model)
    plain = evaluate(trainer, cached=False)
    cold = evaluate(trainer)
    assert counts(capsys)[0] == 0
    warm = evaluate(trainer)
    assert counts(capsys)[1] == 0
    assert torch.equal(cold, plain) and torch.equal(warm, plain)
    if subsample == "new":  # the anchor branch changes the logits, so the cache served it too
        trainer.model.seen_classes = True
        assert not torch.allclose(evaluate(trainer, cached=False), plain)


def test_test_prompts_drawn_at_random_draw_the_same_from_it(tmp_path, data_root, tiny_vit_path, anchor, capsys):
    """AnchorOPT's EVAL_GUMBEL draws an arrangement for every test batch: the same ones from the cache."""
    drawn = anchored(anchor, "TRAINER.ANCHOROPT.EVAL_GUMBEL", "True")
    trainer = build(data_root, tmp_path, tiny_vit_path, "CoOp", *drawn, subsample="new")
    perturb(trainer.model)

    def logits(cached: bool, seed: int = 0) -> torch.Tensor:
        torch.manual_seed(seed)
        return evaluate(trainer, cached)

    plain = logits(False)
    assert not torch.equal(logits(False, seed=1), plain)  # the draws change the logits
    assert torch.equal(logits(True), plain)
    assert counts(capsys) == (0, 9)
    assert torch.equal(logits(True), plain)
    assert counts(capsys) == (9, 0)


@pytest.mark.parametrize("anchoropt", [False, True])
def test_maple_never_uses_it(tmp_path, data_root, tiny_vit_path, anchor, capsys, anchoropt):
    maple = build(data_root, tmp_path, tiny_vit_path, "MaPLe", *(anchored(anchor) if anchoropt else []),
                  subsample="new")
    perturb(maple.model)
    assert torch.equal(evaluate(maple), evaluate(maple, cached=False))
    assert "Feature cache: not used (the test logits of MaPLe do not come from a frozen image encoder" in \
        capsys.readouterr().out
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("method", ["IVLP", "PromptSRC"])
def test_ivlp_and_promptsrc_use_it_only_without_vision_prompts(tmp_path, data_root, tiny_vit_path, anchor, capsys,
                                                              method):
    """With vision prompts the test logits come from the prompted encoder (never cached); without them
    (PROMPT_DEPTH_VISION 0) from the frozen one, whose cached features give the uncached logits, AnchorOPT's anchor
    branch on new classes included."""
    node = method.upper()
    depth = [f"TRAINER.{node}.PROMPT_DEPTH_TEXT", "2", f"TRAINER.{node}.PROMPT_DEPTH_VISION"]
    prompted = build(data_root, tmp_path / "a", tiny_vit_path, method, *depth, "2")
    perturb(prompted.model)
    assert torch.equal(evaluate(prompted), evaluate(prompted, cached=False))
    assert f"Feature cache: not used (the test logits of {method} do not come" in capsys.readouterr().out
    text_only = build(data_root, tmp_path / "b", tiny_vit_path, method, *depth, "0", *anchored(anchor),
                      subsample="new")
    perturb(text_only.model)
    plain = evaluate(text_only, cached=False)
    cold = evaluate(text_only)
    assert counts(capsys) == (0, 9)
    warm = evaluate(text_only)
    assert counts(capsys) == (9, 0)
    assert torch.equal(cold, plain) and torch.equal(warm, plain)


def test_switch_off_never_uses_it(tmp_path, data_root, tiny_vit_path, capsys):
    off = build(data_root, tmp_path, tiny_vit_path, "CoOp", cache=False)
    evaluate(off)
    assert "Feature cache" not in capsys.readouterr().out
    assert not (tmp_path / "cache").exists()


def test_training_never_uses_it(tmp_path, data_root, tiny_vit_path, capsys):
    argv = run_args(data_root, tmp_path / "out", "CoOp", tiny_vit_path, CONFIGS["CoOp"], "OPTIM.MAX_EPOCH", "1",
                    "FEATURE_CACHE.ENABLED", "True", "FEATURE_CACHE.DIR", str(tmp_path / "cache"),
                    "TEST.NO_TEST", "True")
    assert train.main(argv) == 0
    assert not (tmp_path / "cache").exists()


def test_an_evaluation_draws_the_random_numbers_it_draws_without_the_cache(tmp_path, data_root, tiny_vit_path,
                                                                           capsys):
    trainer = build(data_root, tmp_path, tiny_vit_path)

    def state_after(cached: bool) -> torch.Tensor:
        torch.manual_seed(0)
        evaluate(trainer, cached)
        return torch.get_rng_state()

    plain = state_after(False)
    assert torch.equal(state_after(True), plain)  # cold
    assert torch.equal(state_after(True), plain)  # warm
    entries(tmp_path)[0].unlink()
    assert torch.equal(state_after(True), plain)  # one entry computed
    assert counts(capsys) == (8, 1)


@pytest.mark.parametrize("persistent", [False, True])
def test_the_draws_are_those_of_iterating_the_loader(persistent):
    def loader():
        return DataLoader(list(range(4)), batch_size=2, num_workers=1, persistent_workers=persistent)

    torch.manual_seed(0)
    iterated = loader()
    for _ in range(3):
        list(iterated)
    expected = torch.get_rng_state()
    torch.manual_seed(0)
    skipped = loader()
    for _ in range(3):
        draw_as_iterating(skipped)
    assert torch.equal(torch.get_rng_state(), expected)


def test_a_training_run_with_validations_is_the_same_with_the_cache(tmp_path, data_root, tiny_vit_path):
    """Each epoch's validation reads the cache; the next epoch's augmentation and order must not change."""

    def trained(name: str, cached: bool) -> tuple[list[str], dict]:
        argv = run_args(data_root, tmp_path / name, "CoOp", tiny_vit_path, CONFIGS["CoOp"], "OPTIM.MAX_EPOCH", "3",
                        "DATALOADER.TRAIN_X.BATCH_SIZE", "2", "TEST.FINAL_MODEL", "best_val",
                        "INPUT.TRANSFORMS", "['random_resized_crop', 'random_flip', 'normalize']",
                        "DATASET.SUBSAMPLE_CLASSES", "base", "FEATURE_CACHE.ENABLED", str(cached),
                        "FEATURE_CACHE.DIR", str(tmp_path / "cache"))
        assert train.main(argv) == 0
        lines = [line for line in (tmp_path / name / "log.txt").read_text().splitlines() if line.startswith("* ")]
        [checkpoint] = (tmp_path / name).rglob("model.pth.tar-3")
        return lines, torch.load(checkpoint, weights_only=False)["state_dict"]

    plain_lines, plain_state = trained("off", False)
    for name in ("cold", "warm"):
        lines, state = trained(name, True)
        assert lines == plain_lines
        assert state.keys() == plain_state.keys()
        assert all(torch.equal(v, plain_state[k]) if torch.is_tensor(v) else v == plain_state[k]
                   for k, v in state.items())


@pytest.mark.parametrize("change", ["weights", "precision", "interpolation", "normalisation"])
def test_what_decides_a_feature_decides_its_group(tmp_path, data_root, tiny_vit_path, capsys, change):
    evaluate(build(data_root, tmp_path, tiny_vit_path))
    assert counts(capsys) == (0, 9)
    if change == "weights":
        trainer = build(data_root, tmp_path, tiny_vit_path)
        with torch.no_grad():
            trainer.model.image_encoder.proj[0, 0] += 1e-3
    elif change == "precision":
        trainer = build(data_root, tmp_path, tiny_vit_path, "CoOp", "TRAINER.COOP.PREC", "bf16")
    elif change == "interpolation":
        trainer = build(data_root, tmp_path, tiny_vit_path, "CoOp", "INPUT.INTERPOLATION", "bilinear")
    else:
        trainer = build(data_root, tmp_path, tiny_vit_path, "CoOp", "INPUT.PIXEL_MEAN", "[0.5, 0.5, 0.5]")
    cold = evaluate(trainer)
    assert counts(capsys) == (0, 9)
    assert torch.equal(cold, evaluate(trainer, cached=False))
    assert len(list((tmp_path / "cache").iterdir())) == 2  # two groups side by side


def test_the_weights_checksum_sees_every_value_dtype_and_shape():
    def module(weight: torch.Tensor) -> torch.nn.Module:
        m = torch.nn.Module()
        m.register_buffer("weight", weight)
        return m

    weight = torch.arange(6.0).reshape(2, 3)
    checksum = weights_checksum(module(weight))
    assert weights_checksum(module(weight.clone())) == checksum
    others = [weight.reshape(3, 2), weight.double(), weight + torch.tensor([[0, 0, 1e-6], [0, 0, 0]])]
    assert all(weights_checksum(module(w)) != checksum for w in others)


def test_a_changed_image_file_is_a_new_entry(tmp_path, data_root, tiny_vit_path, capsys):
    trainer = build(data_root, tmp_path, tiny_vit_path)
    evaluate(trainer)
    counts(capsys)
    path = trainer.test_loader.dataset.data_source[3].impath
    original = Image.open(path).copy()
    try:
        Image.new("RGB", original.size, (10, 200, 30)).save(path)
        cached = evaluate(trainer)
        assert counts(capsys) == (8, 1)
        # The new image is encoded alone, not in a batch of 8: equal up to float rounding.
        torch.testing.assert_close(cached, evaluate(trainer, cached=False), rtol=1e-5, atol=1e-5)
    finally:
        original.save(path)


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "empty"])
def test_a_damaged_entry_is_detected_and_recomputed(tmp_path, data_root, tiny_vit_path, capsys, damage):
    trainer = build(data_root, tmp_path, tiny_vit_path)
    plain = evaluate(trainer)
    counts(capsys)
    victim = entries(tmp_path)[0]
    data = bytearray(victim.read_bytes())
    if damage == "flipped byte":
        data[30] ^= 0x40
    victim.write_bytes({"flipped byte": bytes(data), "truncated": bytes(data[:-5]), "empty": b""}[damage])
    assert decode_entry(victim.read_bytes()) is DAMAGED
    torch.testing.assert_close(evaluate(trainer), plain, rtol=1e-5, atol=1e-5)  # encoded alone, not in a batch
    out = capsys.readouterr().out
    assert "8 of 9 test image features from the cache, 1 computed (1 of them for damaged entries)" in out
    assert isinstance(decode_entry(victim.read_bytes()), torch.Tensor)


def _keys(trainer) -> list[str]:
    return [file_digest(item.impath) for item in trainer.test_loader.dataset.data_source]


def test_entries_exchanged_between_files_are_detected_and_recomputed(tmp_path, data_root, tiny_vit_path, capsys):
    """Each entry is whole, with a valid checksum, but holds another image's feature."""
    trainer = build(data_root, tmp_path, tiny_vit_path)
    perturb(trainer.model)
    plain = evaluate(trainer)
    counts(capsys)
    store = trainer.feature_store(trainer.test_loader)
    keys = _keys(trainer)[:2]
    features = [store.read(key) for key in keys]
    first, second = (Path(store.path(key)) for key in keys)
    first_bytes = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(first_bytes)
    torch.testing.assert_close(evaluate(trainer), plain, rtol=1e-5, atol=1e-5)
    assert "7 of 9 test image features from the cache, 2 computed (2 of them for damaged entries)" in (
        capsys.readouterr().out)
    for key, feature in zip(keys, features):  # rewritten, each with its own image's feature
        torch.testing.assert_close(store.read(key), feature, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("entry", ["another width", "another dtype", "no numbers", "not finite"])
def test_a_well_formed_entry_that_is_no_feature_of_this_encoder_is_recomputed(tmp_path, data_root, tiny_vit_path,
                                                                              capsys, entry):
    trainer = build(data_root, tmp_path, tiny_vit_path)
    plain = evaluate(trainer)
    counts(capsys)
    store = trainer.feature_store(trainer.test_loader)
    key = _keys(trainer)[3]
    feature = store.read(key)
    odd = {"another width": torch.ones(7), "another dtype": feature.double(), "no numbers": torch.ones(0),
           "not finite": torch.full_like(feature, float("nan"))}[entry]
    assert store.write(key, odd)
    torch.testing.assert_close(evaluate(trainer), plain, rtol=1e-5, atol=1e-5)
    assert "8 of 9 test image features from the cache, 1 computed (1 of them for damaged entries)" in (
        capsys.readouterr().out)
    torch.testing.assert_close(store.read(key), feature, rtol=1e-5, atol=1e-5)


def _write_many(root: str, start, rounds: int) -> None:
    store = FeatureStore(root, {"test": 1})
    start.wait()
    for _ in range(rounds):
        for key in range(64):
            assert store.write(f"{key:064x}", torch.full((32,), float(key)))


def test_two_processes_filling_one_store_leave_whole_entries(tmp_path):
    context = multiprocessing.get_context("fork")
    start = context.Barrier(3)
    writers = [context.Process(target=_write_many, args=(str(tmp_path), start, 20)) for _ in range(2)]
    for p in writers:
        p.start()
    store = FeatureStore(str(tmp_path), {"test": 1})
    start.wait()
    while any(p.is_alive() for p in writers):  # reading meanwhile never meets half an entry
        for key in range(0, 64, 7):
            assert store.read(f"{key:064x}") is not DAMAGED
    assert [p.exitcode for p in writers] == [0, 0]
    for key in range(64):
        assert torch.equal(store.read(f"{key:064x}"), torch.full((32,), float(key)))
    assert not list(tmp_path.rglob("*.tmp"))


def _evaluate_run(argv, start) -> None:
    start.wait()
    raise SystemExit(train.main(argv))


def test_two_runs_filling_the_cache_at_once_leave_a_valid_cache(tmp_path, data_root, tiny_vit_path, capsys):
    def argv(name):
        return run_args(data_root, tmp_path / name, "ZeroshotCLIP", tiny_vit_path, CONFIGS["ZeroshotCLIP"],
                        "FEATURE_CACHE.ENABLED", "True", "FEATURE_CACHE.DIR", str(tmp_path / "cache"),
                        extra=["--eval-only"])

    context = multiprocessing.get_context("fork")
    start = context.Barrier(2)
    runs = [context.Process(target=_evaluate_run, args=(argv(f"run{i}"), start)) for i in range(2)]
    for p in runs:
        p.start()
    for p in runs:
        p.join(60)
    assert [p.exitcode for p in runs] == [0, 0]
    assert len(entries(tmp_path)) == 18 and not list(tmp_path.rglob("*.tmp"))
    assert all(isinstance(decode_entry(e.read_bytes()), torch.Tensor) for e in entries(tmp_path))
    accuracy = {(tmp_path / f"run{i}" / "log.txt").read_text().split("* accuracy:")[1].split()[0] for i in range(2)}
    capsys.readouterr()
    assert train.main(argv("run2")) == 0
    assert "18 of 18 test image features from the cache, 0 computed" in capsys.readouterr().out
    log = (tmp_path / "run2" / "log.txt").read_text()
    assert accuracy == {log.split("* accuracy:")[1].split()[0]}


def test_an_unwritable_folder_only_costs_the_storing(tmp_path, data_root, tiny_vit_path, capsys):
    (tmp_path / "cache").write_text("a file where the folder should be")
    trainer = build(data_root, tmp_path, tiny_vit_path)
    assert torch.equal(evaluate(trainer), evaluate(trainer, cached=False))
    out = capsys.readouterr().out
    assert "0 of 9 test image features from the cache, 9 computed; not stored:" in out


def test_the_switch_and_the_folder_decide_no_numbers():
    cfg = get_cfg()
    other = cfg.clone()
    other.merge_from_list(["FEATURE_CACHE.ENABLED", True, "FEATURE_CACHE.DIR", "/elsewhere"])
    assert settings_of(cfg, "eval") == settings_of(other, "eval")
    assert cfg.FEATURE_CACHE.ENABLED is False


def test_listing_and_clearing(tmp_path, data_root, tiny_vit_path, capsys):
    evaluate(build(data_root, tmp_path, tiny_vit_path))
    evaluate(build(data_root, tmp_path, tiny_vit_path, "CoOp", "TRAINER.COOP.PREC", "bf16"))
    (tmp_path / "cache" / "notes").mkdir()  # not a group: never removed
    capsys.readouterr()
    assert cache_tool.main([str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "fp32  9 entries" in out and "bf16  9 entries" in out and "2 group(s), 18 entries" in out
    assert cache_tool.main([str(tmp_path / "cache"), "--clear", "--older-than", "1"]) == 0
    assert "2 group(s)" in capsys.readouterr().out  # both used just now
    # A run that stored an entry into a group cleared meanwhile leaves it without its description.
    FeatureStore(str(tmp_path / "cache"), {"cleared": True}).write("ab" * 32, torch.zeros(4))
    assert cache_tool.main([str(tmp_path / "cache"), "--clear"]) == 0
    assert "0 group(s), 0 entries, 0.0 MiB (3 removed)" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["notes"]


def test_the_run_scripts_turn_it_on_without_moving_their_outputs(monkeypatch):
    script = str(REPO / "scripts/coop/atprompt_base2new_test.sh")
    monkeypatch.delenv("EXTRA_OPTS", raising=False)
    plain = [job.folder for job in run_protocol.jobs_of(script, ["caltech101", "data", "1"])]
    monkeypatch.setenv("EXTRA_OPTS", "FEATURE_CACHE.ENABLED True FEATURE_CACHE.DIR /scratch/features")
    assert [job.folder for job in run_protocol.jobs_of(script, ["caltech101", "data", "1"])] == plain
    monkeypatch.setenv("EXTRA_OPTS", "TRAINER.COOP.N_CTX 8")  # a setting that changes numbers still does
    assert [job.folder for job in run_protocol.jobs_of(script, ["caltech101", "data", "1"])] != plain


def test_the_benchmark_runs_a_protocol_three_times_with_the_same_results(tmp_path, capsys):
    same, ratio = benchmark_cache.main(["--arch", "tiny", "--seeds", "1", "--targets", "1", "--classes", "4",
                                        "--images", "10", "--work", str(tmp_path)])
    out = capsys.readouterr().out
    assert same and ratio > 0
    assert "seed1/xd_target1" in out and "result lines identical in all passes: yes" in out
    assert (tmp_path / "cache").is_dir()
