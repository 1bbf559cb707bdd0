"""Calibrated scores, one-to-one assignment and frame verdicts."""

import itertools
import json
import pickle

import numpy as np
import pytest

from characters import consistency
from characters.consistency import (
    SHIPPED_THRESHOLD,
    CharacterProfile,
    FrameVerdict,
    Verdict,
    assign,
    frame_judgement,
    score_faces,
    score_frame,
    similarity_to_score,
)
from characters.faces import Face
from tests.face_data import encoded, frame_with, portrait_scan, variant_scan
from tests.factories import image_bytes

PEOPLE = ["astronaut.png", "biden.jpg", "grace_hopper.jpg", "obama.jpg"]


def embedding_of(name: str) -> np.ndarray:
    return portrait_scan(name).faces[0].embedding


def profile(character_id: int, name: str, *portraits: str) -> CharacterProfile:
    embeddings = [embedding_of(p) for p in portraits]
    return CharacterProfile(character_id, name, consistency.mean_profile(embeddings))


@pytest.fixture(scope="module")
def cast():
    return {
        "marcus": profile(1, "Marcus", "obama.jpg"),
        "ada": profile(2, "Ada", "grace_hopper.jpg"),
        "joe": profile(3, "Joe", "biden.jpg"),
    }


def face(embedding, *, box=(0, 0, 100, 100), score: float = 1.5) -> Face:
    return Face(box=box, score=score, size=box[2] - box[0], embedding=np.asarray(embedding))


# --- Calibration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("similarity", "score"),
    [(1.0, 100), (0.93, 65), (0.9, 50), (0.8, 0), (0.5, 0), (1.2, 100)],
)
def test_it_maps_cosine_similarity_to_the_0_100_scale(similarity, score):
    assert similarity_to_score(similarity) == pytest.approx(score)


def test_it_ships_the_threshold_on_the_same_scale():
    assert SHIPPED_THRESHOLD == 65
    assert consistency.score_to_similarity(SHIPPED_THRESHOLD) == pytest.approx(0.93)


def test_it_accepts_the_same_person_in_two_different_photos():
    similarity = consistency.cosine(embedding_of("obama.jpg"), embedding_of("obama2.jpg"))

    assert similarity_to_score(similarity) >= SHIPPED_THRESHOLD + 5


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(PEOPLE, 2)))
def test_it_rejects_every_pair_of_different_people(a, b):
    similarity = consistency.cosine(embedding_of(a), embedding_of(b))

    assert similarity > 0.75  # raw cosine is not centred: strangers look "similar"
    assert similarity_to_score(similarity) < SHIPPED_THRESHOLD - 5


def test_it_normalises_profiles_and_keeps_them_picklable():
    raw = embedding_of("obama.jpg")
    made = CharacterProfile(7, "Marcus", raw)

    assert np.linalg.norm(made.embedding) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(pickle.loads(pickle.dumps(made)).embedding, made.embedding)
    with pytest.raises(ValueError, match="non-zero"):
        CharacterProfile(8, "Nobody", np.zeros(128, dtype=np.float32))


def test_it_averages_unit_embeddings_so_each_reference_weighs_the_same():
    a, b = np.array([3.0, 0.0]), np.array([0.0, 0.5])

    mean = consistency.mean_profile([a, b])

    assert np.allclose(mean, [2**-0.5, 2**-0.5])
    assert consistency.mean_profile([]) is None


# --- Assignment --------------------------------------------------------------------------------


def test_it_assigns_by_best_total_similarity_not_greedily():
    # Greedy takes face 0 for character 0 (0.95) and leaves face 1 with 0.50: total 1.45.
    similarities = np.array([[0.95, 0.94], [0.93, 0.50]])

    assert assign(similarities) == {1: 0, 0: 1}  # 0.94 + 0.93 = 1.87


def test_it_gives_each_face_to_at_most_one_character():
    similarities = np.array([[0.99, 0.98, 0.97]])  # one face, three characters

    assert assign(similarities) == {0: 0}


def test_it_leaves_extra_faces_unassigned():
    similarities = np.array([[0.80], [0.96], [0.85]])

    assert assign(similarities) == {0: 1}


def test_it_assigns_greedily_beyond_the_exact_limit():
    n = consistency.MAX_EXACT_CHARACTERS + 1
    similarities = np.eye(n) * 0.5 + 0.4

    assert assign(similarities) == {i: i for i in range(n)}


# --- Frame verdicts from faces -----------------------------------------------------------------


def test_it_matches_each_character_to_their_own_face(cast):
    faces = [
        face(embedding_of("grace_hopper.jpg"), box=(700, 100, 900, 300)),
        face(embedding_of("obama2.jpg"), box=(100, 100, 300, 300)),
    ]

    result = score_faces(faces, [cast["marcus"], cast["ada"]], width=1280, height=720)

    marcus, ada = result.characters
    assert (marcus.verdict, marcus.box) == (Verdict.MATCH, (100, 100, 300, 300))
    assert (ada.verdict, ada.box) == (Verdict.MATCH, (700, 100, 900, 300))
    assert ada.score == pytest.approx(100, abs=0.5)  # the very same photo
    assert SHIPPED_THRESHOLD <= marcus.score < 100
    assert result.unknown_faces == []
    assert result.consistent
    assert result.judgement == (FrameVerdict.ACCEPT, round(marcus.score, 1))


def test_it_reports_a_mismatch_a_missing_character_and_an_unknown_face(cast):
    faces = [face(embedding_of("biden.jpg"))]

    result = score_faces(faces, [cast["marcus"], cast["ada"]], width=640, height=360)
    assert not result.consistent
    verdicts = {c.name: c.verdict for c in result.characters}
    assert sorted(verdicts.values()) == [Verdict.MISMATCH, Verdict.MISSING]
    missing = next(c for c in result.characters if c.verdict == Verdict.MISSING)
    assert (missing.score, missing.box) == (None, None)
    wrong = next(c for c in result.characters if c.verdict == Verdict.MISMATCH)
    assert result.judgement == (FrameVerdict.REJECT, round(wrong.score, 1))

    extra = score_faces(
        [face(embedding_of("obama.jpg")), face(embedding_of("biden.jpg"), box=(5, 5, 90, 90))],
        [cast["marcus"]],
        width=640,
        height=360,
    )
    assert extra.characters[0].verdict == Verdict.MATCH
    assert extra.unknown_faces == [(5, 5, 90, 90)]


def test_it_never_calls_a_frame_without_a_face_consistent(cast):
    assert not score_faces([], [cast["marcus"]], width=10, height=10).consistent
    nobody = score_faces([], [], width=10, height=10)
    assert not nobody.consistent
    assert nobody.judgement == (FrameVerdict.NONE, None)


def entry(verdict: str, score: float | None) -> dict:
    return {"name": "x", "verdict": verdict, "score": score}


@pytest.mark.parametrize(
    "characters, expected",
    [
        # Every expected character found at or above the threshold: consistent.
        ([entry("match", 90), entry("match", 71)], (FrameVerdict.ACCEPT, 71)),
        # A face of the cast below the threshold: rejected, whoever else is there.
        ([entry("match", 90), entry("mismatch", 40)], (FrameVerdict.REJECT, 40)),
        ([entry("mismatch", 50), entry("missing", None)], (FrameVerdict.REJECT, 50)),
        # Part of the cast out of view, nobody wrong: not judged, but it has a score.
        ([entry("match", 88), entry("missing", None)], (FrameVerdict.NONE, 88)),
        # Nobody of the cast in view, or nobody expected: no verdict and no score (never 0).
        ([entry("missing", None)], (FrameVerdict.NONE, None)),
        ([], (FrameVerdict.NONE, None)),
    ],
)
def test_one_rule_judges_every_frame(characters, expected):
    assert frame_judgement(characters) == expected


def test_a_frame_score_reports_what_the_rule_decided(cast):
    faces = [face(embedding_of("obama2.jpg"))]
    partial = score_faces(faces, [cast["marcus"], cast["ada"]], width=10, height=10).to_dict()

    assert (partial["verdict"], partial["consistent"]) == ("", False)
    assert partial["score"] == partial["characters"][0]["score"] >= SHIPPED_THRESHOLD
    assert frame_judgement(partial["characters"]) == (FrameVerdict.NONE, partial["score"])


def test_it_ignores_a_weak_detection_beside_a_confident_face(cast):
    weak = face(embedding_of("obama.jpg"), box=(0, 0, 120, 120), score=0.15)
    real = face(embedding_of("grace_hopper.jpg"), box=(200, 0, 300, 100), score=1.4)

    result = score_faces([weak, real], [cast["ada"]], width=400, height=200)

    assert result.face_count == 1
    assert result.unknown_faces == []
    assert result.characters[0].verdict == Verdict.MATCH


def test_it_judges_at_the_drama_threshold(cast):
    faces = [face(embedding_of("obama2.jpg"))]
    score = score_faces(faces, [cast["marcus"]], width=1, height=1).characters[0].score

    strict = score_faces(faces, [cast["marcus"]], width=1, height=1, threshold=score + 1)
    lenient = score_faces(faces, [cast["marcus"]], width=1, height=1, threshold=score)

    assert strict.characters[0].verdict == Verdict.MISMATCH
    assert lenient.characters[0].verdict == Verdict.MATCH


# --- Frames from pixels ------------------------------------------------------------------------


def test_it_scores_a_real_frame_with_two_characters(cast):
    frame = encoded(frame_with("obama2.jpg", "grace_hopper.jpg"))

    result = score_frame(frame, [cast["ada"], cast["marcus"]], SHIPPED_THRESHOLD)

    assert (result.width, result.height) == (1280, 720)
    assert [c.verdict for c in result.characters] == [Verdict.MATCH, Verdict.MATCH]
    ada, marcus = result.characters
    assert ada.box[0] > 640 > marcus.box[2]  # Ada stands on the right
    assert result.consistent
    document = json.loads(json.dumps(result.to_dict()))
    assert document["consistent"] is True
    assert [c["verdict"] for c in document["characters"]] == ["match", "match"]


def test_it_flags_a_stranger_in_a_characters_place(cast):
    frame = frame_with("obama2.jpg", "biden.jpg")

    result = score_frame(frame, [cast["marcus"], cast["ada"]])

    marcus, ada = result.characters
    assert marcus.verdict == Verdict.MATCH
    assert ada.verdict == Verdict.MISMATCH
    assert ada.score < SHIPPED_THRESHOLD
    assert not result.consistent


def test_it_scores_a_frame_without_faces_as_all_missing(cast):
    result = score_frame(image_bytes(size=(1280, 720)), [cast["marcus"]])

    assert result.face_count == 0
    assert result.characters[0].verdict == Verdict.MISSING
    assert not result.consistent


# --- Outlier references ------------------------------------------------------------------------


def test_it_flags_the_reference_of_someone_else():
    references = {
        1: embedding_of("obama.jpg"),
        2: embedding_of("obama2.jpg"),
        3: variant_scan("obama2.jpg", "mirror").faces[0].embedding,
        4: embedding_of("biden.jpg"),
    }

    outliers, similarities = consistency.find_outliers(references)

    assert outliers == {4}
    assert similarity_to_score(similarities[4]) < SHIPPED_THRESHOLD
    assert all(similarity_to_score(similarities[key]) >= SHIPPED_THRESHOLD for key in (1, 2, 3))


def test_it_needs_two_other_references_to_call_one_an_outlier():
    references = {1: embedding_of("obama.jpg"), 2: embedding_of("biden.jpg")}

    outliers, similarities = consistency.find_outliers(references)

    assert outliers == set()
    assert similarity_to_score(similarities[1]) < SHIPPED_THRESHOLD  # measured, not flagged
    assert consistency.find_outliers({1: embedding_of("obama.jpg")}) == (set(), {})
