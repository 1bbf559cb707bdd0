"""The drama's queue page and its controls: pause/resume, move up, cancel, retry; and the
"Check script" action that queues a chapter check. Viewers read; editors act.

Actions answer htmx with the fresh queue (the websocket also pushes it to everyone else) and a
plain form post with a redirect, so the page works without JavaScript too.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from dramas import live
from dramas import takes as take_services
from dramas.jobs import chapter_check_enqueue
from dramas.models import Chapter, Role
from dramas.takes import RENDER
from dramas.views.helpers import can, done, drama_view
from studio.jobs import services as job_services
from studio.jobs.models import Job
from studio.jobs.selectors import queue_summary

QUEUE = "dramas/queue.html"


def _job(drama, job_id: int) -> Job:
    return get_object_or_404(Job, drama_id=drama.id, id=job_id)


def _answer(request, drama):
    context = live.queue_context(drama=drama, can_edit=can(request, Role.EDITOR))
    url = reverse("drama_queue", args=[drama.id])
    return done(request, url, partial=f"{QUEUE}#queue-live", context=context)


def _attempt(request, action, success: str) -> None:
    try:
        action()
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, success)


@drama_view()
@require_http_methods(["GET"])
def drama_queue(request, drama):
    context = live.queue_context(drama=drama, can_edit=can(request, Role.EDITOR))
    return render(request, QUEUE, context)


@drama_view()
@require_POST
def queue_pause(request, drama):
    job_services.queue_pause(drama_id=drama.id)
    messages.success(request, "Queue paused: queued jobs wait, running ones finish.")
    return _answer(request, drama)


@drama_view()
@require_POST
def queue_resume(request, drama):
    job_services.queue_resume(drama_id=drama.id)
    messages.success(request, "Queue resumed.")
    return _answer(request, drama)


@drama_view()
@require_POST
def job_cancel(request, drama, job_id: int):
    job = _job(drama, job_id)
    _attempt(request, lambda: job_services.job_cancel(job=job), f"“{job.title}” is cancelled.")
    return _answer(request, drama)


@drama_view()
@require_POST
def job_retry(request, drama, job_id: int):
    job = _job(drama, job_id)
    # A render goes back on the queue with its take (take_render_retry checks the scene).
    retry = take_services.take_render_retry if job.kind == RENDER else job_services.job_retry
    _attempt(request, lambda: retry(job=job), f"“{job.title}” is queued again.")
    return _answer(request, drama)


@drama_view()
@require_POST
def job_bump(request, drama, job_id: int):
    job = _job(drama, job_id)
    _attempt(request, lambda: job_services.job_bump(job=job), f"“{job.title}” moved up.")
    return _answer(request, drama)


@drama_view()
@require_POST
def chapter_check(request, drama, chapter_id: int):
    chapter = get_object_or_404(Chapter, drama=drama, id=chapter_id)
    chapter_check_enqueue(chapter=chapter)
    messages.success(
        request, f"Checking the script of chapter {chapter.number}; the result is in the queue."
    )
    board = reverse("drama_board", args=[drama.id]) + f"?chapter={chapter.id}"
    context = {"drama": drama, "summary": queue_summary(drama_id=drama.id)}
    return done(request, board, partial=f"{QUEUE}#queue-summary", context=context)
