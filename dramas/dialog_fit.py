"""Does a scene hold its dialog? How long each scene must be for the render to place every
line with natural gaps, measured from the lines voiced already and estimated from word counts
for the others; and the lengthening a producer may accept, in durations the video model takes.

The render's rules, not a second set: lines placed by `dialog_audio.needed_seconds`, after the
establishing beat when some of the cast never speaks (`speech.ESTABLISHING_S`) and after the
offline animatic's title card, which grows with the scene (a fifth of it, 0.5 to 2 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dramas.dialog_audio import SpokenLine, needed_seconds
from dramas.scripts import duration_range
from dramas.speech import ESTABLISHING_S
from dramas.speech_jobs import voiced_audio
from studio.providers import registry
from studio.providers.local_animatic import LocalAnimatic

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from dramas.models import LineAudio, Scene

# Unhurried speech: about 150 words a minute, or 4.5 characters a second in Chinese, Japanese
# and Korean, plus a breath between lines.
WORDS_PER_S = 2.5
CJK_CHARS_PER_S = 4.5
PAUSE_PER_LINE_S = 0.3
CJK_LANGUAGES = ("zh", "ja", "ko")
# The render warns only past this (dramas/pipeline.py, the speech step): the same margin here.
FIT_TOLERANCE_S = 0.05


def speaking_time_s(*, lines: list[str], language: str) -> float:
    """The word-count estimate of how long these lines take to say, one after another."""
    cjk = language.lower().startswith(CJK_LANGUAGES)
    seconds = 0.0
    for line in lines:
        if cjk:
            seconds += len("".join(line.split())) / CJK_CHARS_PER_S
        else:
            seconds += len(line.split()) / WORDS_PER_S
    return seconds + PAUSE_PER_LINE_S * max(0, len(lines) - 1)


def speech_start_s(*, video, duration_s: float) -> float:
    """Where the render's dialog may start in a scene this long: after the offline animatic's
    title card (as the render's speech step places it), else at once."""
    return video.title_card_s(duration_s) if isinstance(video, LocalAnimatic) else 0.0


@dataclass(frozen=True)
class SceneNeed:
    """A scene's dialog as the render would place it, voiced lines at their real length."""

    scene: Scene
    spoken: tuple[SpokenLine, ...]
    establishing_s: float
    measured: int  # lines voiced already (LineAudio found by the render's key)
    estimated: int  # lines not voiced yet: word-count estimate
    video: object = field(repr=False, compare=False)

    def needed_s(self, duration_s: float) -> float:
        """How long the scene must be to hold every line when it lasts `duration_s` (the
        title card, if any, depends on the scene's length)."""
        start = speech_start_s(video=self.video, duration_s=duration_s) + self.establishing_s
        return needed_seconds(list(self.spoken), start_s=start)

    def fits(self, duration_s: float) -> bool:
        # Compared as the render compares it: the need rounded to hundredths, then the margin.
        return round(self.needed_s(duration_s), 2) <= duration_s + FIT_TOLERANCE_S

    @property
    def exact(self) -> bool:
        return self.estimated == 0

    @property
    def source(self) -> str:
        """Which figures the need came from, in a producer's words."""
        if not self.estimated:
            return "measured from its voiced lines"
        if not self.measured:
            return "estimated from word counts: voice the chapter to measure it"
        return (
            f"{self.measured} voiced line{'s' if self.measured != 1 else ''} measured, "
            f"{self.estimated} estimated from word counts"
        )


def scene_needs(
    *,
    scenes: Sequence[Scene],
    language: str,
    audio: Mapping[int, LineAudio] | None = None,
    video=None,
) -> list[SceneNeed]:
    """Each scene's need. Lines and cast are read through `scene.lines` and `scene.characters`
    (prefetch them); `audio`, the voiced lines by id, is looked up when not given."""
    video = video if video is not None else registry.video()
    lines_of = {
        scene.id: [line for line in scene.lines.all() if line.line.strip()] for scene in scenes
    }
    if audio is None:
        audio = voiced_audio(lines=[line for lines in lines_of.values() for line in lines])
    needs = []
    for scene in scenes:
        lines = lines_of[scene.id]
        spoken = []
        for line in lines:
            row = audio.get(line.id)
            seconds = (
                row.duration_s
                if row is not None
                else speaking_time_s(lines=[line.line], language=language)
            )
            spoken.append(
                SpokenLine(
                    line_id=line.id,
                    speaker=line.display_speaker,
                    text=line.line,
                    duration_s=seconds,
                    audio_key=row.key if row is not None else "",
                )
            )
        cast = {character.id for character in scene.characters.all()}
        silent_cast = bool(cast - {line.speaker_id for line in lines})
        needs.append(
            SceneNeed(
                scene=scene,
                spoken=tuple(spoken),
                establishing_s=ESTABLISHING_S if lines and silent_cast else 0.0,
                measured=sum(1 for line in lines if line.id in audio),
                estimated=sum(1 for line in lines if line.id not in audio),
                video=video,
            )
        )
    return needs


# --- Lengthening, with consent ------------------------------------------------------------------


@dataclass(frozen=True)
class Lengthening:
    """A scene too short for its dialog: the duration it could have, or None when even the
    longest the video model takes is too short."""

    scene: Scene
    old_s: float
    new_s: float | None
    needed_s: float  # at new_s, or at the longest allowed duration
    longest_s: float
    source: str
    exact: bool

    @property
    def message(self) -> str:
        where = f"Scene {self.scene.order} ({self.scene.location})"
        about = "" if self.exact else "about "
        if self.new_s is None:
            return (
                f"{where}: the dialog needs {about}{self.needed_s:.1f} s, longer than the "
                f"{self.longest_s:g} s the video model allows for a scene: cut lines or split "
                "the scene."
            )
        return (
            f"{where}: {self.old_s:g} s → {self.new_s:g} s (the dialog needs "
            f"{about}{self.needed_s:.1f} s, {self.source})"
        )


def allowed_durations(capabilities, *, longer_than: float) -> list[float]:
    """The durations the video model takes that are longer than `longer_than`, shortest
    first: its own list, or whole seconds within its range (and its maximum)."""
    low, high = duration_range(capabilities)
    if capabilities.durations_s:
        listed = sorted({float(d) for d in capabilities.durations_s if low <= d <= high})
        return [d for d in listed if d > longer_than]
    start = max(math.floor(longer_than) + 1, math.ceil(low))
    candidates = [float(d) for d in range(start, math.floor(high) + 1)]
    if high > longer_than and high not in candidates:
        candidates.append(high)
    return candidates


def lengthenings(*, needs: Sequence[SceneNeed]) -> list[Lengthening]:
    """The scenes that do not hold their dialog, each with the shortest duration the video
    model takes that does. Scenes that fit are not listed: nothing changes for them."""
    found = []
    for need in needs:
        current = need.scene.duration_s
        if not need.spoken or need.fits(current):
            continue
        capabilities = need.video.capabilities
        longest = duration_range(capabilities)[1]
        options = allowed_durations(capabilities, longer_than=current)
        new = next((seconds for seconds in options if need.fits(seconds)), None)
        found.append(
            Lengthening(
                scene=need.scene,
                old_s=current,
                new_s=new,
                needed_s=need.needed_s(new if new is not None else longest),
                longest_s=longest,
                source=need.source,
                exact=need.exact,
            )
        )
    return found
