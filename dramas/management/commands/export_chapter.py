"""Export a chapter's cut as a delivery package into a folder.

    python manage.py export_chapter CHAPTER_ID --out DIR [--allow-gaps] [--loudness -14] [--json]

The package is the one the Cut page exports (dramas/delivery/export.py); an unchanged cut is
not exported again: its stored package is copied out. With --json the last line is
{"files": {name: {"sha256", "bytes"}}, "duration_s", "width", "height", "loudness_lufs",
"true_peak_dbtp", "input_hash", "reused"}.
"""

import json
import time
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError

from dramas.delivery.export import LOUDNESS_PRESETS, export_now, export_request
from dramas.models import Chapter, ExportStatus

WAIT_STEP_S = 0.5


class Command(BaseCommand):
    help = "Export a chapter's cut: mastered MP4s, subtitles, editor timelines, covers, manifest."

    def add_arguments(self, parser) -> None:
        parser.add_argument("chapter_id", type=int)
        parser.add_argument("--out", required=True, help="folder to write the package into")
        parser.add_argument(
            "--allow-gaps", action="store_true", help="export scenes without a take as gaps"
        )
        parser.add_argument(
            "--loudness", type=float, default=-14.0, choices=LOUDNESS_PRESETS, help="LUFS"
        )
        parser.add_argument("--json", action="store_true", dest="as_json")
        parser.add_argument(
            "--timeout", type=float, default=1800.0, help="seconds to wait for a queued export"
        )

    def handle(self, *args, chapter_id: int, out: str, as_json: bool, **options):
        chapter = Chapter.objects.select_related("drama").filter(id=chapter_id).first()
        if chapter is None:
            raise CommandError(f"There is no chapter {chapter_id}.")
        try:
            export, _made = export_request(
                chapter=chapter,
                loudness_lufs=options["loudness"],
                allow_gaps=options["allow_gaps"],
                queue=False,
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        reused = export.status == ExportStatus.DONE
        if not reused:
            if export.job_id:  # queued from the Cut page: a worker is making it
                self.note("This cut is being exported by the studio's worker; waiting for it.")
                export = self.wait(export, timeout=options["timeout"])
            else:
                self.note(f"Exporting chapter {chapter.number} “{chapter.title}”…")
                started = time.monotonic()
                try:
                    export = export_now(export=export)
                except Exception as error:
                    raise CommandError(f"The export failed: {error}") from error
                self.note(f"Exported in {time.monotonic() - started:.1f} s.")
        else:
            self.note("This cut was exported before: its package is copied.")
        target = Path(out)
        for name in export.files:
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with default_storage.open(f"{export.folder}/{name}", "rb") as source:
                path.write_bytes(source.read())
        self.note(f"Wrote {len(export.files)} files into {target}.")
        result = {
            "files": {
                name: {"sha256": entry["sha256"], "bytes": entry["bytes"]}
                for name, entry in export.files.items()
            },
            "duration_s": export.duration_s,
            "width": export.width,
            "height": export.height,
            "loudness_lufs": export.loudness_lufs,
            "true_peak_dbtp": export.true_peak_dbtp,
            "input_hash": export.input_hash,
            "reused": reused,
        }
        if as_json:
            self.stdout.write(json.dumps(result))
        else:
            loudness = (
                f"{export.loudness_lufs:.1f} LUFS, true peak {export.true_peak_dbtp:.1f} dBTP"
                if export.loudness_lufs is not None
                else "silent"
            )
            self.stdout.write(
                f"{export.duration_s:.1f} s, {export.width}x{export.height}, {loudness}"
            )

    def wait(self, export, *, timeout: float):
        deadline = time.monotonic() + timeout
        while export.status not in (ExportStatus.DONE, ExportStatus.FAILED):
            if time.monotonic() > deadline:
                raise CommandError(f"The export was not done after {timeout:g} s.")
            time.sleep(WAIT_STEP_S)
            export.refresh_from_db()
        if export.status == ExportStatus.FAILED:
            raise CommandError(f"The export failed: {export.error}")
        return export

    def note(self, text: str) -> None:
        self.stderr.write(text)
