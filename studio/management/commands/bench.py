"""`python manage.py bench NAME [--json]`: run one benchmark and print its figures.

Each benchmark is a function `run(options) -> dict` in its own module, registered below by
name. With --json the last line printed is one JSON object, for scripts and BENCHMARKS.md.
"""

import importlib
import json as jsonlib

from django.core.management.base import BaseCommand, CommandError

BENCHMARKS: dict[str, str] = {
    # name: "module:function"
    "consistency": "characters.bench:consistency",
    "ratelimit": "studio.providers.bench:ratelimit",
    "animatic": "studio.providers.bench:animatic",
    "queue": "studio.jobs.bench:queue",
    "fanout": "studio.fanout_bench:fanout",
    "costs": "studio.costs_bench:costs",
    "page": "dramas.bench:page",
}


class Command(BaseCommand):
    help = "Run a benchmark by name and print its figures (last line JSON with --json)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help=f"one of: {', '.join(sorted(BENCHMARKS)) or 'none'}")
        parser.add_argument("--json", action="store_true", help="print one JSON object last")
        parser.add_argument(
            "--quick", action="store_true", help="a smaller load, for smoke tests of the bench"
        )

    def handle(self, *args, name: str, json: bool, quick: bool, **options) -> None:
        if name not in BENCHMARKS:
            raise CommandError(
                f"Unknown benchmark {name!r}; choose one of: {', '.join(sorted(BENCHMARKS))}."
            )
        module_name, function_name = BENCHMARKS[name].split(":")
        run = getattr(importlib.import_module(module_name), function_name)
        figures = run({"quick": quick, "stdout": self.stdout})
        if json:
            self.stdout.write(_dumps(figures))
        else:
            for key, value in figures.items():
                self.stdout.write(f"{key}: {value}")


def _dumps(figures: dict) -> str:
    return jsonlib.dumps(figures, sort_keys=True, default=str)
