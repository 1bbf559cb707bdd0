"""Calibrated face similarity, character profiles and frame scoring.

Calibration (measured with faces.MODEL_ID, see README "Character consistency"): descriptors
are compared by cosine similarity, which ignores their length, so a reference embedding and a
profile (a unit vector) are on the same footing. Raw cosine is not centred: two different
people already score 0.80-0.91, the same person 0.95-1.00 (photos and degraded copies of them).
Producers see a score on a 0-100 scale:

    score = 100 * clamp((cosine - 0.80) / (1 - 0.80), 0, 1)

so strangers read 0-56 and the same person 75-100. The shipped threshold is cosine 0.93, score
65: in the middle of the gap between the two populations, with no false accept on the
evaluation set. (dlib's usual rule, euclidean distance < 0.6 on raw descriptors, is cosine
about 0.91 at their typical norm of 1.4: it accepts two of our different people.)

Everything here is plain data: profiles and scores are dataclasses, never ORM objects, so the
same code runs in a pool process, a job or a test.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from characters import faces as face_model

COSINE_FLOOR = 0.80  # score 0: about the lowest similarity two different people show
COSINE_THRESHOLD = 0.93  # the shipped boundary between "same person" and "someone else"
# Weaker detections were false positives in our measurements (0.14-0.28); real faces scored
# 0.64-2.4, except faces under about 40 px.
MIN_CONFIDENCE = 0.3
MAX_EXACT_CHARACTERS = 8  # exact assignment up to here (2^8 states per face); greedy beyond


def similarity_to_score(similarity: float) -> float:
    """Cosine similarity to the producer's 0-100 scale."""
    return 100.0 * min(1.0, max(0.0, (similarity - COSINE_FLOOR) / (1.0 - COSINE_FLOOR)))


def score_to_similarity(score: float) -> float:
    return COSINE_FLOOR + (1.0 - COSINE_FLOOR) * score / 100.0


SHIPPED_THRESHOLD = round(similarity_to_score(COSINE_THRESHOLD))  # 65


def unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if norm == 0.0 or not math.isfinite(norm):
        raise ValueError("an embedding must be a finite, non-zero vector")
    return vector / norm


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(unit(a), unit(b)))


def mean_profile(embeddings: Sequence[np.ndarray]) -> np.ndarray | None:
    """The L2-normalised mean of unit embeddings: each reference weighs the same."""
    if not embeddings:
        return None
    return unit(np.mean([unit(e) for e in embeddings], axis=0))


@dataclass(frozen=True)
class CharacterProfile:
    character_id: int
    name: str
    embedding: np.ndarray  # stored as a unit float32 vector

    def __post_init__(self) -> None:
        object.__setattr__(self, "embedding", unit(self.embedding))


def considered_faces(faces: Sequence[face_model.Face]) -> list[face_model.Face]:
    """Confident detections, or all of them when none is confident (a small or turned face)."""
    confident = [face for face in faces if face.score >= MIN_CONFIDENCE]
    return confident or list(faces)


def find_outliers(
    embeddings: dict[int, np.ndarray], *, threshold: float = SHIPPED_THRESHOLD
) -> tuple[set[int], dict[int, float]]:
    """References that look like someone else than the rest, and each one's resemblance.

    Leave-one-out, trimmed: the reference least like the mean of the others is flagged while
    it scores below `threshold` and at least two others remain to judge it by; then the next.
    Returns the flagged keys and, per key, the similarity to the mean of the kept others.
    """
    units = {key: unit(vector) for key, vector in embeddings.items()}
    kept = set(units)
    outliers: set[int] = set()
    while len(kept) >= 3:
        worst, worst_similarity = None, 2.0
        for key in sorted(kept):
            others = mean_profile([units[k] for k in kept if k != key])
            similarity = float(np.dot(units[key], others))
            if similarity < worst_similarity:
                worst, worst_similarity = key, similarity
        if similarity_to_score(worst_similarity) >= threshold:
            break
        kept.discard(worst)
        outliers.add(worst)
    similarities = {}
    for key, vector in units.items():
        others = mean_profile([units[k] for k in kept if k != key])
        if others is not None:
            similarities[key] = float(np.dot(vector, others))
    return outliers, similarities


class Verdict(StrEnum):
    """One character in one frame."""

    MATCH = "match"
    MISMATCH = "mismatch"
    MISSING = "missing"


class FrameVerdict(StrEnum):
    """A whole frame (the values the studio stores on a frame)."""

    ACCEPT = "accept"  # consistent: every expected character found at or above the threshold
    REJECT = "reject"  # a face of the cast found below the threshold: someone looks wrong
    NONE = ""  # not judged: nobody of the cast in view, or part of it, none looking wrong


def frame_judgement(characters: Sequence[dict]) -> tuple[FrameVerdict, float | None]:
    """A frame's verdict and score from its characters (`CharacterScore.to_dict()` entries):
    the one rule, for scoring, storing and showing frames alike.

    A frame is consistent when every expected character is found at or above the threshold.
    It is rejected when a face of the cast is found below it. Otherwise it is not judged: a
    character out of view in one shot is not a wrong face (the take's verdict holds a
    character who is never seen against the take). The score is the lowest score among the
    characters found, None when none was (a frame with no face of the cast has no score)."""
    found = [c["score"] for c in characters if c.get("score") is not None]
    score = min(found) if found else None
    if not characters or score is None:
        return FrameVerdict.NONE, score
    verdicts = {c.get("verdict") for c in characters}
    if Verdict.MISMATCH in verdicts:
        return FrameVerdict.REJECT, score
    if verdicts == {Verdict.MATCH}:
        return FrameVerdict.ACCEPT, score
    return FrameVerdict.NONE, score


Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class CharacterScore:
    character_id: int
    name: str
    verdict: Verdict
    score: float | None = None  # 0-100, None when missing
    similarity: float | None = None  # raw cosine, for the record
    box: Box | None = None  # the face assigned to this character

    def to_dict(self) -> dict:
        return {
            "character_id": self.character_id,
            "name": self.name,
            "verdict": str(self.verdict),
            "score": None if self.score is None else round(self.score, 1),
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "box": None if self.box is None else list(self.box),
        }


@dataclass(frozen=True)
class FrameScore:
    width: int
    height: int
    threshold: float
    characters: list[CharacterScore]
    unknown_faces: list[Box] = field(default_factory=list)  # faces assigned to nobody
    face_count: int = 0

    @property
    def judgement(self) -> tuple[FrameVerdict, float | None]:
        """(verdict, score) by `frame_judgement`, the one rule."""
        return frame_judgement([c.to_dict() for c in self.characters])

    @property
    def consistent(self) -> bool:
        """Every expected character found at or above the threshold (never without a face)."""
        return self.judgement[0] == FrameVerdict.ACCEPT

    def to_dict(self) -> dict:
        verdict, score = self.judgement
        return {
            "width": self.width,
            "height": self.height,
            "threshold": self.threshold,
            "consistent": verdict == FrameVerdict.ACCEPT,
            "verdict": str(verdict),
            "score": score,
            "face_count": self.face_count,
            "characters": [c.to_dict() for c in self.characters],
            "unknown_faces": [list(box) for box in self.unknown_faces],
        }


def assign(similarities: np.ndarray) -> dict[int, int]:
    """One-to-one faces (rows) to characters (columns): {character: face}.

    As many characters get a face as there are faces, and among those assignments the one
    with the highest total similarity wins. Exact (dynamic programming over the set of
    characters already given a face) up to MAX_EXACT_CHARACTERS, greedy beyond.
    """
    n_faces, n_characters = similarities.shape
    if n_faces == 0 or n_characters == 0:
        return {}
    if n_characters > MAX_EXACT_CHARACTERS:
        return _assign_greedy(similarities)
    # best[mask] = ((pairs, total), choices) after the faces seen so far.
    best: dict[int, tuple[tuple[int, float], tuple[tuple[int, int], ...]]] = {0: ((0, 0.0), ())}
    for face in range(n_faces):
        step = dict(best)  # this face stays unassigned
        for mask, ((pairs, total), choices) in best.items():
            for character in range(n_characters):
                if mask & (1 << character):
                    continue
                candidate = (pairs + 1, total + float(similarities[face, character]))
                new_mask = mask | (1 << character)
                if new_mask not in step or candidate > step[new_mask][0]:
                    step[new_mask] = (candidate, (*choices, (character, face)))
        best = step
    _, choices = max(best.values(), key=lambda entry: entry[0])
    return dict(choices)


def _assign_greedy(similarities: np.ndarray) -> dict[int, int]:
    pairs = sorted(np.ndindex(*similarities.shape), key=lambda fc: -similarities[fc])
    taken_faces: set[int] = set()
    result: dict[int, int] = {}
    for face, character in pairs:
        if face not in taken_faces and character not in result:
            result[character] = face
            taken_faces.add(face)
    return result


def score_faces(
    faces: Sequence[face_model.Face],
    expected: Sequence[CharacterProfile],
    *,
    width: int,
    height: int,
    threshold: float = SHIPPED_THRESHOLD,
) -> FrameScore:
    """Score already-detected faces against the characters expected in the frame."""
    faces = considered_faces(faces)
    matrix = np.array(
        [[float(np.dot(unit(f.embedding), p.embedding)) for p in expected] for f in faces],
        dtype=np.float64,
    ).reshape(len(faces), len(expected))
    chosen = assign(matrix)
    results = []
    for index, profile in enumerate(expected):
        if index not in chosen:
            results.append(CharacterScore(profile.character_id, profile.name, Verdict.MISSING))
            continue
        face = faces[chosen[index]]
        similarity = float(matrix[chosen[index], index])
        score = similarity_to_score(similarity)
        verdict = Verdict.MATCH if score >= threshold else Verdict.MISMATCH
        results.append(
            CharacterScore(profile.character_id, profile.name, verdict, score, similarity, face.box)
        )
    used = set(chosen.values())
    unknown = [face.box for i, face in enumerate(faces) if i not in used]
    return FrameScore(width, height, threshold, results, unknown, len(faces))


def score_frame(
    image: face_model.ImageInput,
    expected: Sequence[CharacterProfile],
    threshold: float = SHIPPED_THRESHOLD,
) -> FrameScore:
    """Detect, embed and score one frame. CPU-bound: run it in the pool
    (`run_cpu(score_frame, jpeg_bytes, profiles, threshold)`); arguments are picklable."""
    scan = face_model.scan(image)
    return score_faces(
        scan.faces, expected, width=scan.width, height=scan.height, threshold=threshold
    )
