"""`python manage.py bench NAME [--json]`: run one benchmark and print its figures.

Benchmarks are found in the installed apps' `bench` packages, each naming its own in
`BENCHMARKS` ({name: "module:function"}, see studio/bench). With --json the last line printed
is one JSON object, for scripts and BENCHMARKS.md.
"""

import importlib
import json as jsonlib

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import module_has_submodule


def benchmarks() -> dict[str, str]:
    """Every installed app's benchmarks, {name: "module:function"}; names are unique."""
    found: dict[str, str] = {}
    for app in apps.get_app_configs():
        if not module_has_submodule(app.module, "bench"):
            continue
        table = getattr(importlib.import_module(f"{app.name}.bench"), "BENCHMARKS", {})
        for name, target in table.items():
            if name in found:
                raise CommandError(f"Two apps name a benchmark {name!r}: {found[name]}, {target}")
            found[name] = target
    return found


class Command(BaseCommand):
    help = "Run a benchmark by name and print its figures (last line JSON with --json)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help=f"one of: {', '.join(sorted(benchmarks())) or 'none'}")
        parser.add_argument("--json", action="store_true", help="print one JSON object last")
        parser.add_argument(
            "--quick", action="store_true", help="a smaller load, for smoke tests of the bench"
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="worker processes (ratelimit: one limit shared through Redis)",
        )
        parser.add_argument(
            "--minutes", type=float, default=None, help="episode length (export: 1.5 by default)"
        )

    def handle(self, *args, name: str, json: bool, quick: bool, workers: int, **options) -> None:
        known = benchmarks()
        if name not in known:
            raise CommandError(
                f"Unknown benchmark {name!r}; choose one of: {', '.join(sorted(known))}."
            )
        module_name, function_name = known[name].split(":")
        run = getattr(importlib.import_module(module_name), function_name)
        if workers < 1:
            raise CommandError("--workers must be 1 or more.")
        if options.get("minutes") is not None and options["minutes"] <= 0:
            raise CommandError("--minutes must be more than 0.")
        figures = run(
            {
                "quick": quick,
                "workers": workers,
                "minutes": options.get("minutes"),
                "stdout": self.stdout,
            }
        )
        if json:
            self.stdout.write(_dumps(figures))
        else:
            for key, value in figures.items():
                self.stdout.write(f"{key}: {value}")


def _dumps(figures: dict) -> str:
    return jsonlib.dumps(figures, sort_keys=True, default=str)
