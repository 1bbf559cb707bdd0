"""The writing jobs: `chapter.generate` and `scene.rewrite` (registered through dramas.jobs).

A job builds the prompts, streams the writer's answer into its checkpoint (the live preview
renders it scene by scene, dramas/live.py), checks it (dramas/scripts.py; one retry with the
errors fed back), repairs what the studio may fix itself, and only then saves: a chapter through
`chapter_script_replace`, a scene in place; each with a version before and after, the version
carrying provider, model, tokens, cost and warnings. Each writer call books its own usage in
the ledger (usage_scope ties it to the drama). Cancelling mid-stream saves nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from dramas import services
from dramas.generation import (
    CHARS_PER_TOKEN,
    GENERATE,
    OUTPUT_BASE_TOKENS,
    OUTPUT_TOKENS_PER_S,
    REWRITE,
    price_of,
)
from dramas.models import Chapter, ChapterSource, ChapterVersion, Scene
from dramas.prompts import chapter_brief, chapter_messages, repair_messages, rewrite_messages
from dramas.scripts import (
    SCHEMA,
    ScriptError,
    duration_range,
    extract_script,
    script_errors,
    script_repair,
)
from studio.jobs.registry import PermanentError, register
from studio.providers import registry as providers
from studio.providers.base import Usage
from studio.providers.ledger import usage_scope

PREVIEW_INTERVAL_S = 0.3


@dataclass
class Written:
    script: dict
    warnings: list[str]
    usage: Usage
    cost_usd: Decimal | None
    provider: str
    model: str
    label: str
    retried: bool


def _plan(payload: dict) -> tuple[list[dict], list[str], tuple[float, float], Chapter]:
    chapter = Chapter.objects.select_related("drama").filter(id=payload["chapter_id"]).first()
    if chapter is None:
        raise PermanentError("The chapter was deleted before it could be written.")
    if "scene_id" in payload:
        scene = chapter.scenes.filter(id=payload["scene_id"]).first()
        if scene is None:
            raise PermanentError("The scene was deleted before it could be rewritten.")
        messages = rewrite_messages(scene=scene, instruction=payload["instruction"])
    else:
        brief = chapter_brief(
            chapter=chapter,
            target_seconds=payload["target_seconds"],
            plot_turns=payload["plot_turns"],
            title_wish=payload.get("title_wish", ""),
            notes=payload.get("notes", ""),
        )
        messages = chapter_messages(chapter=chapter, brief=brief)
    names = list(chapter.drama.characters.values_list("name", flat=True))
    return messages, names, duration_range(providers.video().capabilities), chapter


def _max_tokens(payload: dict) -> int:
    wanted = OUTPUT_BASE_TOKENS + OUTPUT_TOKENS_PER_S * payload.get("target_seconds", 60)
    # Room for a wordier writer than the estimate, within the configured ceiling.
    return min(settings.WRITER_MAX_TOKENS, max(2048, 3 * wanted))


async def _stream(ctx, writer, messages: list[dict], max_tokens: int, expected: int):
    """The writer's whole answer, with the text so far saved for the live preview."""
    parts: list[str] = []
    usage, finish, shown = Usage(), "", 0.0
    async for chunk in writer.stream(messages, json_output=SCHEMA, max_tokens=max_tokens):
        if chunk.text:
            parts.append(chunk.text)
            now = time.monotonic()
            if now - shown >= PREVIEW_INTERVAL_S:
                shown = now
                await _preview(ctx, "".join(parts), expected)
        if chunk.usage is not None:
            usage = chunk.usage
        finish = chunk.finish_reason or finish
    await _preview(ctx, "".join(parts), expected)
    return "".join(parts), usage, finish


async def _preview(ctx, text: str, expected: int) -> None:
    # The checkpoint holds the answer so far for the live preview; a new attempt starts over.
    await ctx.save_checkpoint({"preview": text[-60_000:]})
    scenes = text.count('"location"')
    note = f"Writing scene {scenes}…" if scenes else "Writing…"
    await ctx.progress(min(0.95, len(text) / max(expected, 1)), note=note)


async def _write(ctx, *, messages, names, durations, max_tokens: int, expected: int) -> Written:
    """Stream, check, retry once with the errors; a checked and repaired script, or raise."""
    writer = providers.writer()
    total, costs, retried = Usage(), [], False
    with usage_scope(drama_id=ctx.drama_id):
        for attempt in (1, 2):
            text, usage, finish = await _stream(ctx, writer, messages, max_tokens, expected)
            total = Usage(
                total.input_tokens + usage.input_tokens,
                total.cached_tokens + usage.cached_tokens,
                total.output_tokens + usage.output_tokens,
            )
            costs.append(
                await sync_to_async(price_of)(provider=writer.name, model=writer.model, usage=usage)
            )
            try:
                script = extract_script(text, finish_reason=finish, max_tokens=max_tokens)
                errors = script_errors(script)
            except ScriptError as error:
                if not error.retryable:
                    raise
                errors = error.errors
            if not errors:
                break
            if attempt == 2:
                listed = "; ".join(errors[:6]) + ("; …" if len(errors) > 6 else "")
                raise ScriptError(f"The writer's script was still invalid after a retry: {listed}")
            retried = True
            messages = repair_messages(messages=messages, answer=text, errors=errors)
    checked = script_repair(script, characters=names, durations=durations)
    if retried:
        checked.warnings.insert(
            0, "The first answer broke the script rules; it was fixed on a retry."
        )
    return Written(
        script=checked.script,
        warnings=checked.warnings,
        usage=total,
        cost_usd=None if None in costs else sum(costs, Decimal(0)),
        provider=writer.name,
        model=writer.model,
        label=getattr(writer, "label", "") or writer.model,
        retried=retried,
    )


def _stamp(version: ChapterVersion, written: Written, warnings: list[str]) -> None:
    ChapterVersion.objects.filter(id=version.id).update(
        provider=written.provider[:100],
        model=written.model[:200],
        input_tokens=written.usage.input_tokens,
        cached_tokens=written.usage.cached_tokens,
        output_tokens=written.usage.output_tokens,
        cost_usd=written.cost_usd,
        warnings=warnings,
    )


def _result(version: ChapterVersion, written: Written, warnings: list[str]) -> dict:
    return {
        "chapter_id": version.chapter_id,
        "version_id": version.id,
        "version": version.number,
        "scenes": len(version.script.get("scenes", [])),
        "duration_s": sum(s.get("duration_s", 0) for s in version.script.get("scenes", [])),
        "provider": written.provider,
        "model": written.model,
        "input_tokens": written.usage.input_tokens,
        "cached_tokens": written.usage.cached_tokens,
        "output_tokens": written.usage.output_tokens,
        "cost_usd": None if written.cost_usd is None else str(written.cost_usd),
        "warnings": warnings,
    }


def _user(payload: dict):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(id=payload.get("user_id")).first()


@transaction.atomic
def _save_chapter(payload: dict, written: Written) -> dict:
    chapter = Chapter.objects.select_for_update().filter(id=payload["chapter_id"]).first()
    if chapter is None:
        raise PermanentError("The chapter was deleted while it was being written.")
    warnings = written.warnings
    try:
        with transaction.atomic():
            version = services.chapter_script_replace(
                chapter=chapter,
                script=written.script,
                user=_user(payload),
                note=f"Generated by {written.label}",
                source=ChapterSource.GENERATED,
                archive_approved=payload.get("archive_approved", False),
            )
    except ValidationError as error:
        if getattr(error, "code", None) != "confirm":
            raise
        # Takes were approved while the writer wrote: the script is kept, paid for, but not
        # applied over them; restoring its version applies it.
        warnings = [*warnings, f"Kept as a version, not applied: {' '.join(error.messages)}"]
        version = services.chapter_version_keep(
            chapter=chapter,
            script=written.script,
            user=_user(payload),
            note=f"Generated by {written.label} (not applied: takes were approved meanwhile)",
            source=ChapterSource.GENERATED,
        )
    _stamp(version, written, warnings)
    return _result(version, written, warnings)


@transaction.atomic
def _save_scene(payload: dict, written: Written) -> dict:
    scene = Scene.objects.select_related("chapter__drama").filter(id=payload["scene_id"]).first()
    if scene is None:
        raise PermanentError("The scene was deleted while it was being rewritten.")
    chapter = scene.chapter
    warnings = written.warnings
    scenes = written.script["scenes"]
    # Asked for one scene; a writer that sent the whole chapter back has it at its place.
    same_length = len(scenes) > 1 and len(scenes) == chapter.scenes.count()
    data = scenes[scene.order - 1] if same_length else scenes[0]
    note = f"Rewrote scene {scene.order}: {payload['instruction']}"[:150]
    # In place, not through chapter_script_replace: the other scenes keep their ids (and takes).
    services.chapter_version_save(chapter=chapter, note="Before: " + note)
    services.scene_apply_script(scene=scene, data=data)
    version = services.chapter_version_save(
        chapter=chapter,
        user=_user(payload),
        note=f"{note} ({written.label})",
        source=ChapterSource.GENERATED,
    )
    _stamp(version, written, warnings)
    return _result(version, written, warnings)


async def _run(ctx, save) -> dict:
    messages, names, durations, _chapter = await sync_to_async(_plan)(ctx.payload)
    expected = CHARS_PER_TOKEN * (
        OUTPUT_BASE_TOKENS + OUTPUT_TOKENS_PER_S * ctx.payload.get("target_seconds", 40)
    )
    written = await _write(
        ctx,
        messages=messages,
        names=names,
        durations=durations,
        max_tokens=_max_tokens(ctx.payload),
        expected=expected,
    )
    await ctx.progress(0.98, note="Saving the script…")
    return await sync_to_async(save)(ctx.payload, written)


@register(GENERATE, max_attempts=3)
async def chapter_generate_job(ctx) -> dict:
    return await _run(ctx, _save_chapter)


@register(REWRITE, max_attempts=3)
async def scene_rewrite_job(ctx) -> dict:
    return await _run(ctx, _save_scene)
