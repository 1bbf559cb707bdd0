"""`python manage.py consistency_eval DIR [--json] [--threshold SCORE]`.

DIR holds one folder per identity, each with that person's images (JPEG, PNG, WebP). Every
image is scanned with the face model (in the shared process pool); the largest confident
face represents it, and images without a face are left out and listed. Every pair of images
is then judged at the threshold: same identity and score >= threshold is a true accept,
different identities and score >= threshold a false accept. With --json the last line is one
JSON object: pairs, accuracy, false_accepts, false_rejects, roc_auc, threshold, no_face, ...
"""

import itertools
import json as jsonlib
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from characters import consistency, faces
from studio.cpu import cpu_pool

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def roc_auc(*, positives: list[float], negatives: list[float]) -> float | None:
    """Probability that a same-identity pair outscores a different-identity one (ties: 1/2)."""
    if not positives or not negatives:
        return None
    ordered = np.sort(np.asarray(negatives))
    below = np.searchsorted(ordered, positives, side="left")
    through = np.searchsorted(ordered, positives, side="right")
    wins = below.sum() + 0.5 * (through - below).sum()
    return float(wins / (len(positives) * len(negatives)))


class Command(BaseCommand):
    help = "Score all same/different identity image pairs in DIR at the shipped threshold."

    def add_arguments(self, parser) -> None:
        parser.add_argument("dir", type=Path, help="one folder per identity")
        parser.add_argument("--json", action="store_true", help="print one JSON object last")
        parser.add_argument(
            "--threshold",
            type=float,
            default=consistency.SHIPPED_THRESHOLD,
            help=f"score (0-100) to judge at; default {consistency.SHIPPED_THRESHOLD}",
        )

    def handle(self, *args, dir: Path, json: bool, threshold: float, **options) -> None:
        images = self.find_images(dir)
        pool = cpu_pool()
        futures = {path: pool.submit(faces.scan, str(path)) for _, path in images}
        embedded: list[tuple[str, str, np.ndarray]] = []
        no_face, unreadable = [], []
        for identity, path in images:
            name = str(path.relative_to(dir))
            try:
                scan = futures[path].result()
            except Exception as error:  # one broken file should not void the evaluation
                unreadable.append(name)
                self.stderr.write(f"{name}: could not be read ({error})")
                continue
            found = consistency.considered_faces(scan.faces)
            if not found:
                no_face.append(name)
                continue
            embedded.append((identity, name, consistency.unit(found[0].embedding)))

        same, different = [], []
        false_accepts, false_rejects = [], []
        for (id_a, name_a, a), (id_b, name_b, b) in itertools.combinations(embedded, 2):
            score = consistency.similarity_to_score(float(np.dot(a, b)))
            accepted = score >= threshold
            if id_a == id_b:
                same.append(score)
                if not accepted:
                    false_rejects.append((name_a, name_b, score))
            else:
                different.append(score)
                if accepted:
                    false_accepts.append((name_a, name_b, score))
        pairs = len(same) + len(different)
        errors = len(false_accepts) + len(false_rejects)
        auc = roc_auc(positives=same, negatives=different)
        figures = {
            "model": faces.MODEL_ID,
            "threshold": threshold,
            "images": len(images),
            "identities": len({identity for identity, _ in images}),
            "pairs": pairs,
            "same_pairs": len(same),
            "different_pairs": len(different),
            "accuracy": round((pairs - errors) / pairs, 4) if pairs else None,
            "false_accepts": len(false_accepts),
            "false_rejects": len(false_rejects),
            "roc_auc": None if auc is None else round(auc, 4),
            "lowest_same_score": round(min(same), 1) if same else None,
            "highest_different_score": round(max(different), 1) if different else None,
            "no_face": no_face,
            "unreadable": unreadable,
        }
        for name_a, name_b, score in false_accepts:
            self.stdout.write(f"false accept: {name_a} ~ {name_b} scored {score:.1f}")
        for name_a, name_b, score in false_rejects:
            self.stdout.write(f"false reject: {name_a} ~ {name_b} scored {score:.1f}")
        for name in no_face:
            self.stdout.write(f"no face: {name} (left out)")
        for key, value in figures.items():
            if key not in ("no_face", "unreadable"):
                self.stdout.write(f"{key}: {value}")
        if json:
            self.stdout.write(jsonlib.dumps(figures, sort_keys=True))

    def find_images(self, root: Path) -> list[tuple[str, Path]]:
        if not root.is_dir():
            raise CommandError(f"{root} is not a directory.")
        images = [
            (folder.name, path)
            for folder in sorted(p for p in root.iterdir() if p.is_dir())
            for path in sorted(folder.iterdir())
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not images:
            raise CommandError(
                f"No images found in {root}: it needs one folder per identity holding "
                "JPEG, PNG or WebP files."
            )
        return images
