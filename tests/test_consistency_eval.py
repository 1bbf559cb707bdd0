"""`manage.py consistency_eval`: the shipped threshold on the portraits and their variants."""

import json
import shutil
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from characters.consistency import SHIPPED_THRESHOLD
from characters.management.commands.consistency_eval import roc_auc
from tests.face_data import IDENTITIES, VARIANTS, build_eval_set
from tests.factories import FACES_DIR, image_bytes

KEYS = {"pairs", "accuracy", "false_accepts", "false_rejects", "roc_auc", "threshold", "no_face"}


def evaluate(folder, *args) -> tuple[dict, str]:
    out = StringIO()
    call_command("consistency_eval", str(folder), "--json", *args, stdout=out)
    lines = out.getvalue().strip().splitlines()
    return json.loads(lines[-1]), out.getvalue()


def test_it_meets_the_bar_on_the_portraits_and_their_augmented_variants(tmp_path):
    folder = build_eval_set(target=tmp_path / "faces")
    images = sum(len(files) for files in IDENTITIES.values()) * (1 + len(VARIANTS))

    figures, output = evaluate(folder)

    print(json.dumps(figures))  # the figures quoted in README and BENCHMARKS.md (pytest -s)
    assert KEYS <= set(figures)
    assert figures["images"] == images == 65
    assert figures["identities"] == 4
    found = images - len(figures["no_face"])
    assert figures["pairs"] == found * (found - 1) // 2
    assert figures["threshold"] == SHIPPED_THRESHOLD
    assert figures["false_accepts"] == 0
    assert figures["accuracy"] >= 0.98
    assert figures["roc_auc"] >= 0.99
    assert figures["same_pairs"] > 400 and figures["different_pairs"] > 1000
    assert f"accuracy: {figures['accuracy']}" in output


def test_it_lists_images_without_a_face_and_leaves_them_out(tmp_path):
    for identity, name in [("grace", "grace_hopper.jpg"), ("obama", "obama.jpg")]:
        (tmp_path / identity).mkdir()
        shutil.copy(FACES_DIR / name, tmp_path / identity / name)
    shutil.copy(FACES_DIR / "obama2.jpg", tmp_path / "obama" / "obama2.jpg")
    (tmp_path / "grace" / "wall.png").write_bytes(image_bytes(size=(300, 300)))
    (tmp_path / "grace" / "notes.txt").write_text("not an image")

    figures, output = evaluate(tmp_path)

    assert figures["no_face"] == ["grace/wall.png"]
    assert "no face: grace/wall.png (left out)" in output
    assert (figures["pairs"], figures["same_pairs"], figures["different_pairs"]) == (3, 1, 2)
    assert (figures["accuracy"], figures["false_accepts"], figures["false_rejects"]) == (1.0, 0, 0)


def test_it_reports_errors_at_a_threshold_set_too_low(tmp_path):
    for name in ["astronaut.png", "grace_hopper.jpg"]:
        (tmp_path / name.split(".")[0]).mkdir()
        shutil.copy(FACES_DIR / name, tmp_path / name.split(".")[0] / name)

    figures, output = evaluate(tmp_path, "--threshold", "10")

    assert (figures["pairs"], figures["false_accepts"], figures["accuracy"]) == (1, 1, 0.0)
    assert "false accept: astronaut/astronaut.png ~ grace_hopper/grace_hopper.jpg" in output


def test_it_refuses_a_folder_without_identity_folders(tmp_path):
    with pytest.raises(CommandError, match="is not a directory"):
        call_command("consistency_eval", str(tmp_path / "missing"))
    with pytest.raises(CommandError, match="one folder per identity"):
        call_command("consistency_eval", str(tmp_path))


@pytest.mark.parametrize(
    ("positives", "negatives", "auc"),
    [([0.9, 0.8], [0.1, 0.2], 1.0), ([0.1], [0.9], 0.0), ([0.5], [0.5], 0.5), ([], [1.0], None)],
)
def test_it_computes_the_roc_auc_from_ranks(positives, negatives, auc):
    assert roc_auc(positives=positives, negatives=negatives) == auc
