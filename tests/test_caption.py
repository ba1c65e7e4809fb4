"""Captioning: the COCO reader and its errors through the CLI, the CNN encoder, the split and
vocabulary, BLEU and the baseline, a tiny training run, and captioning image files."""

import contextlib
import io
import json

import pytest
import torch
from PIL import Image

from rnnlab.cli import main
from rnnlab.config import ConfigError, apply_overrides
from rnnlab.data.coco import load_image, read_coco_captions
from rnnlab.data.text import DataError
from rnnlab.data.tokenize import tokenize_caption as tokenize
from rnnlab.models.captioner import ConvEncoder
from rnnlab.tasks.caption import Caption, bleu

TINY = ["train.threads=1", "train.device=cpu"]
SMALL = ["data.image_size=16", "data.crop_pad=4", "model.cnn_channels=8,16",
         "model.embed=16", "model.hidden=32", "model.max_len=6", "model.beam=2",
         "data.min_count=1"]

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
SHAPES = ["square", "box", "picture"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_image(path, colour, size=(20, 14)):
    """A plain image of one colour with a dark stripe, so crops and flips change it."""
    image = Image.new("RGB", size, COLOURS[colour])
    for y in range(size[1]):
        image.putpixel((1, y), (0, 0, 0))
    image.save(path)


def write_coco(folder, n=12, subfolder="images", captions_per_image=3):
    """A tiny caption set: n plain-colour images, each captioned with its colour."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / subfolder).mkdir(exist_ok=True)
    images, annotations = [], []
    colours = list(COLOURS)
    for i in range(n):
        colour = colours[i % len(colours)]
        name = f"{i:04d}.{'png' if i % 2 else 'jpg'}"
        make_image(folder / subfolder / name, colour)
        images.append({"id": 100 + i, "file_name": name, "width": 20, "height": 14})
        for k in range(captions_per_image):
            annotations.append({"image_id": 100 + i, "id": 1000 * i + k,
                                "caption": f"A {colour} {SHAPES[k % len(SHAPES)]}."})
    (folder / "captions.json").write_text(
        json.dumps({"images": images, "annotations": annotations}, indent=1), encoding="utf-8")
    return folder


def rewrite(folder, edit):
    path = folder / "captions.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def task_for(folder, *overrides):
    cfg = apply_overrides(Caption.default_config(), [*SMALL, *overrides])
    cfg.data.path = str(folder)
    return Caption(cfg)


# --- reader ---------------------------------------------------------------------------------


def test_reader_resolves_file_names_in_dir_and_images(tmp_path):
    folder = write_coco(tmp_path / "set", n=4)
    (folder / "images" / "0000.jpg").rename(folder / "0000.jpg")      # next to the JSON
    images = read_coco_captions(folder)
    assert [im.id for im in images] == [100, 101, 102, 103]
    assert images[0].path == folder / "0000.jpg"
    assert images[1].path == folder / "images" / "0001.png"
    assert images[0].captions == ("A red square.", "A red box.", "A red picture.")
    assert read_coco_captions(folder / "captions.json") == images    # the JSON file itself


def test_reader_string_ids_and_uneven_caption_counts(tmp_path):
    folder = write_coco(tmp_path / "set", n=3)

    def edit(data):
        for image in data["images"]:
            image["id"] = f"img{image['id']}"
        for a in data["annotations"]:
            a["image_id"] = f"img{a['image_id']}"
        data["annotations"] = data["annotations"][:-2]               # image 3: one caption
    rewrite(folder, edit)
    images = read_coco_captions(folder)
    assert [im.id for im in images] == ["img100", "img101", "img102"]
    assert [len(im.captions) for im in images] == [3, 3, 1]


def test_load_image_is_rgb_uint8_square(tmp_path):
    path = tmp_path / "a.png"
    Image.new("L", (30, 10), 200).save(path)                          # greyscale -> RGB
    pixels = load_image(path, 12)
    assert pixels.shape == (3, 12, 12) and pixels.dtype == torch.uint8
    assert torch.all(pixels == 200)
    make_image(tmp_path / "b.jpg", "red")
    red = load_image(tmp_path / "b.jpg", 8).float().mean((1, 2))
    assert red[0] > 150 and red[1] < 90 and red[2] < 90


def break_json(folder):
    (folder / "captions.json").write_text('{"images": [\n  {"id": 1,\n  "file_name" "a.jpg"}]}',
                                          encoding="utf-8")


def del_key(section, i, key):
    return lambda data: data[section][i].pop(key)


BAD = {
    "broken json": (break_json, r"captions.json:3:15: broken JSON"),
    "not an object": (lambda f: (f / "captions.json").write_text("[1, 2]", encoding="utf-8"),
                      "the top level must be a JSON object"),
    "no images": (lambda f: rewrite(f, lambda d: d.pop("images")), "has no 'images' key"),
    "no annotations": (lambda f: rewrite(f, lambda d: d.pop("annotations")),
                       "has no 'annotations' key"),
    "no id": (lambda f: rewrite(f, del_key("images", 2, "id")), "images[2] has no 'id' key"),
    "no file_name": (lambda f: rewrite(f, del_key("images", 0, "file_name")),
                     "images[0] has no 'file_name' key"),
    "bad id": (lambda f: rewrite(f, lambda d: d["images"][1].update(id=[1])),
               "images[1]['id'] must be an int or string id"),
    "no caption": (lambda f: rewrite(f, del_key("annotations", 4, "caption")),
                   "annotations[4] has no 'caption' key"),
    "no image_id": (lambda f: rewrite(f, del_key("annotations", 0, "image_id")),
                    "annotations[0] has no 'image_id' key"),
    "unknown image id": (lambda f: rewrite(f, lambda d: d["annotations"][5].update(image_id=7)),
                         "annotations[5] names image_id 7, which is not the id of any"),
    "duplicate id": (lambda f: rewrite(f, lambda d: d["images"][3].update(id=100)),
                     "images[3] repeats image id 100"),
    "uncaptioned image": (lambda f: rewrite(f, lambda d: d.update(
        annotations=[a for a in d["annotations"] if a["image_id"] != 101])),
        "image id 101 (0001.png) has no caption"),
    "missing image file": (lambda f: (f / "images" / "0003.png").unlink(),
                           "images[3] (id 103): image file '0003.png' not found in"),
    "unreadable image": (lambda f: (f / "images" / "0002.jpg").write_text("not a jpeg"),
                         "cannot read image"),
    "truncated image": (lambda f: (f / "images" / "0004.jpg").write_bytes(
        (f / "images" / "0004.jpg").read_bytes()[:60]), "cannot read image"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_caption_sets_are_clear_errors(case, tmp_path, capsys):
    folder = write_coco(tmp_path / "set", n=6)
    damage, message = BAD[case]
    damage(folder)
    code = main(["train", "caption", "--data", str(folder), "--out", str(tmp_path / "run"),
                 "--set", *TINY, *SMALL, "train.steps=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rnnlab: error: ") and message in err
    if case in ("unreadable image", "truncated image"):
        assert ".jpg" in err                                          # names the image file
    else:
        assert "captions.json" in err                                 # names the JSON file
    assert not (tmp_path / "run").exists()


def test_missing_data_folder_and_no_data(tmp_path, capsys):
    assert main(["train", "caption", "--data", str(tmp_path / "nowhere"), "--set",
                 *TINY]) == 2
    assert "nowhere' does not exist" in capsys.readouterr().err
    assert main(["train", "caption", "--set", *TINY]) == 2
    assert "needs a COCO-format caption set: --data DIR" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train", "caption", "--data", str(tmp_path / "empty"), "--set", *TINY]) == 2
    assert "captions.json' does not exist" in capsys.readouterr().err


def test_bad_config_values(tmp_path):
    folder = write_coco(tmp_path / "set", n=6)
    with pytest.raises(ConfigError, match="cnn_channels"):
        task_for(folder, "model.cnn_channels=8,x")
    with pytest.raises(ConfigError, match="too small for 2 conv blocks"):
        task_for(folder, "data.image_size=3")
    with pytest.raises(ConfigError, match="exponential schedule needs 0 < k < 1"):
        task_for(folder, "model.sampling=exponential", "model.sampling_k=200")


# --- model ----------------------------------------------------------------------------------


def test_encoder_shapes():
    encoder = ConvEncoder([8, 16, 24])
    context, memory = encoder(torch.randn(5, 3, 32, 32))
    assert context.shape == (5, 24)                                   # global average pool
    assert memory.shape == (16, 5, 24)                                # 32 / 2^3 = 4: 4x4 = 16
    fmap = encoder.features(torch.randn(2, 3, 32, 32))
    context, memory = encoder.eval()(torch.randn(2, 3, 32, 32))
    assert torch.allclose(memory.mean(0), context, atol=1e-6)         # context = mean of memory
    assert fmap.shape == (2, 24, 4, 4)


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("condition", ["init", "input", "both"])
def test_every_conditioning_trains_a_step(condition, attention, tmp_path):
    task = task_for(write_coco(tmp_path / "set", n=6), f"model.condition={condition}",
                    f"model.attention={attention}")
    model = task.build_model()
    images, tokens_in, targets, index = task.batch(torch.Generator().manual_seed(0), 3, "cpu")
    assert images.shape == (3, 3, 16, 16) and tokens_in.shape[1] == 3 * 5 == len(index)
    logits = model(images, tokens_in, index)
    assert logits.shape == (*tokens_in.shape, len(task.vocab))
    loss, _ = task.loss(model, (images, tokens_in, targets, index))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.decoder.condition == condition and model.decoder.use_attention == attention


def test_scheduled_sampling_ratio_follows_the_step(tmp_path):
    task = task_for(write_coco(tmp_path / "set", n=6), "model.sampling=linear",
                    "model.sampling_k=1", "model.sampling_c=0.01", "model.sampling_min=0.2")
    task.set_position({"drawn": 30})
    assert task.teacher_forcing() == pytest.approx(0.7)
    model = task.build_model()
    task.set_position({"drawn": 29})                          # the next batch is the 30th
    loss, metrics = task.loss(model, task.batch(torch.Generator().manual_seed(0), 2, "cpu"))
    assert metrics == {"teacher_forcing": pytest.approx(0.7)} and torch.isfinite(loss)
    task.set_position({"drawn": 1000})
    assert task.teacher_forcing() == pytest.approx(0.2)


# --- data: split, vocabulary, batches, BLEU ---------------------------------------------------


def test_split_is_by_image_seeded_and_independent_of_train_seed(tmp_path):
    folder = write_coco(tmp_path / "set", n=20)
    a, b = task_for(folder, "train.seed=1"), task_for(folder, "train.seed=2")
    ids = {s: [im.id for im in a.splits[s]] for s in a.splits}
    assert [len(ids[s]) for s in ("train", "valid", "test")] == [16, 2, 2]
    assert sorted(sum(ids.values(), [])) == list(range(100, 120))    # each image once
    assert ids == {s: [im.id for im in b.splits[s]] for s in b.splits}
    c = task_for(folder, "data.split_seed=5")
    assert ids != {s: [im.id for im in c.splits[s]] for s in c.splits}
    assert a.pixels["train"].shape == (16, 3, 20, 20)                 # image_size + crop_pad


def test_vocabulary_from_training_captions_only(tmp_path):
    folder = write_coco(tmp_path / "set", n=20)
    task = task_for(folder, "data.min_count=2")
    train_words = {w for im in task.splits["train"] for c in im.captions for w in tokenize(c)}
    assert task.vocab[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert set(task.vocab[4:]) <= train_words
    assert task.decode(task.encode("A red zebra.") + [task.eos, 5]) == "a red"   # <unk> dropped
    assert tokenize("A dog's ball, on the  bed.") == ["a", "dog's", "ball", "on", "the", "bed"]


def test_batch_augments_and_pairs_captions_with_their_image(tmp_path):
    task = task_for(write_coco(tmp_path / "set", n=20))
    g = torch.Generator().manual_seed(0)
    images, tokens_in, targets, index = task.batch(g, 6, "cpu")
    assert tokens_in.shape == targets.shape and tokens_in.shape[1] == 30
    assert torch.equal(index, torch.arange(6).repeat_interleave(5))
    assert torch.all(tokens_in[0] == task.bos)
    assert torch.equal(tokens_in[1:], targets[:-1])
    for b in range(30):   # each caption names the colour of its own image
        colour = task.vocab[targets[1, b]]
        mean = images[index[b]].mean((1, 2))
        assert int(mean.argmax()) == list(COLOURS).index(colour)
    again = task.batch(torch.Generator().manual_seed(0), 6, "cpu")
    assert torch.equal(again[0], images)                              # seeded
    crops = {tuple(task.batch(torch.Generator().manual_seed(s), 1, "cpu")[0][0, 0, 0, :4]
                   .tolist()) for s in range(12)}
    assert len(crops) > 1                                             # random crops / flips


def test_bleu_with_all_references():
    refs = [["a red square on a table", "a red box on the floor"],
            ["a blue picture of the sea"]]                           # uneven reference counts
    for first in refs[0]:                                             # either reference
        assert bleu([first, "a blue picture of the sea"], refs) == pytest.approx(100.0)
    assert bleu(["green green green green", "green"], refs) < 1.0
    assert 0 < bleu(["a red square on the floor", "a blue picture of a sea"], refs) < 100
    assert bleu(["a b c"], [["a b c"]]) == 0.0                         # no 4-grams: BLEU-4 is 0


def test_constant_caption_baseline(tmp_path):
    task = task_for(write_coco(tmp_path / "set", n=20))
    caption = task.constant_caption()
    assert caption in {" ".join(tokenize(c)) for im in task.splits["train"]
                       for c in im.captions}
    refs = task.references("valid")
    assert task.baseline_bleu("valid") == pytest.approx(bleu([caption] * len(refs), refs))
    mean, std = task.random_caption_bleu("test", seeds=3)
    assert 0 <= mean <= 100 and std >= 0


def test_evaluate_in_chunks_matches_one_pass(tmp_path):
    task = task_for(write_coco(tmp_path / "set", n=30), "data.valid_fraction=0.2")
    torch.manual_seed(0)
    model = task.build_model().eval()
    whole = task.evaluate(model, "valid", "cpu")
    assert set(whole) == {"loss", "bleu", "baseline_bleu"}
    assert task.evaluate(model, "valid", "cpu", chunk=4) == pytest.approx(whole)


# --- training, evaluate, caption -------------------------------------------------------------


@pytest.fixture(scope="module")
def caption_run(tmp_path_factory):
    """One tiny training run shared by the tests below: (data folder, run, final figures)."""
    tmp = tmp_path_factory.mktemp("caption")
    folder = write_coco(tmp / "set", n=24)
    run, out = tmp / "run", io.StringIO()
    threads = torch.get_num_threads()
    with contextlib.redirect_stdout(out):
        code = main(["train", "caption", "--data", str(folder), "--out", str(run), "--json",
                     "--set", *TINY, *SMALL, "train.steps=40", "train.batch_size=6",
                     "train.eval_every=40", "train.log_every=5", "train.lr=0.01"])
    torch.set_num_threads(threads)
    assert code == 0
    return folder, run, json.loads(out.getvalue().strip().splitlines()[-1])


def test_training_run_lowers_the_loss_and_evaluate_reproduces_it(caption_run, capsys):
    folder, run, final = caption_run
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_loss = [x["loss"] for x in lines if x["split"] == "train"]
    valid_loss = [x["loss"] for x in lines if x["split"] == "valid"]
    assert train_loss[-1] < 0.6 * train_loss[0]
    assert valid_loss[-1] < 0.6 * valid_loss[0]
    assert {"valid_loss", "valid_bleu", "valid_baseline_bleu", "test_bleu"} <= set(final)
    assert main(["evaluate", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["test_bleu"] == pytest.approx(final["test_bleu"])
    assert again["valid_loss"] == pytest.approx(final["valid_loss"], rel=1e-5)


def test_caption_command_on_image_paths(caption_run, capsys, tmp_path):
    folder, run, _ = caption_run
    make_image(tmp_path / "new.png", "blue", size=(40, 25))
    paths = [str(folder / "images" / "0000.jpg"), str(tmp_path / "new.png")]
    assert main(["caption", str(run), *paths]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and all(line and set(line) <= set("abcdefghijklmnopqrstuvwxyz' ")
                                 for line in out)
    assert main(["caption", str(run), *paths, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["outputs"] == out and result["inputs"] == paths


def test_caption_missing_or_unreadable_image_is_a_clear_error(caption_run, capsys, tmp_path):
    _, run, _ = caption_run
    assert main(["caption", str(run), str(tmp_path / "nope.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnlab: error: ") and "nope.jpg' does not exist" in err
    (tmp_path / "text.jpg").write_text("hello")
    assert main(["caption", str(run), str(tmp_path / "text.jpg")]) == 2
    assert "cannot read image" in capsys.readouterr().err


# --- the real caption set --------------------------------------------------------------------


def test_coco_mini_captions(shared_data):
    folder = shared_data("coco_mini_captions")
    images = read_coco_captions(folder)
    assert len(images) == 101 and all(len(im.captions) == 5 for im in images)
    assert images[0].path.name == "000000000790.jpg"
    assert images[0].captions[0] == "a family is sitting down at a table to have cake"
    assert load_image(images[0].path, 64).shape == (3, 64, 64)
    cfg = Caption.default_config()
    cfg.data.path = str(folder)
    task = Caption(cfg)
    assert [len(task.splits[s]) for s in ("train", "valid", "test")] == [81, 10, 10]
    assert task.pixels["train"].shape == (81, 3, 72, 72)


@pytest.mark.slow
def test_default_config_trains_and_captions_real_images(shared_data, tmp_path, capsys):
    folder = shared_data("coco_mini_captions")
    run = tmp_path / "run"
    assert main(["train", "caption", "--data", str(folder), "--out", str(run), "--json",
                 "--set", *TINY, "train.steps=3", "train.eval_every=3"]) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["valid_baseline_bleu"] > 0 and 0 <= final["test_bleu"] <= 100
    photos = [str(folder / "images" / "000000000790.jpg"), str(folder / "images" /
                                                             "000000000139.jpg")]
    assert main(["caption", str(run), *photos]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_coco_reader_error_on_missing_image_file_names_it(tmp_path):
    folder = write_coco(tmp_path / "set", n=3)
    (folder / "images" / "0001.png").unlink()
    with pytest.raises(DataError, match=r"image file '0001.png' not found"):
        read_coco_captions(folder)
