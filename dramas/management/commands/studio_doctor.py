"""`manage.py studio_doctor [--json] [--fix]`: what is broken in the studio's data (dramas.doctor).

Plain output is one line per invariant, with examples. With --json each line is a JSON object;
the last one has one integer per invariant and "problems", their sum (after repairs, with
--fix), so scripts can read `tail -n 1`. The exit status is 0 either way: "problems" says it.
"""

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from dramas import doctor


class Command(BaseCommand):
    help = "Report broken invariants of takes, jobs and media; --fix repairs what is safe."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", dest="as_json", help="JSON lines")
        parser.add_argument("--fix", action="store_true", help="repair what is safe to repair")

    def handle(self, *args, as_json: bool, fix: bool, **options):
        if "dramas_take" not in connection.introspection.table_names():
            raise CommandError(
                "The database has no studio tables yet: run `make run` or `manage.py migrate`."
            )
        repaired = doctor.repair() if fix else None
        findings = doctor.examine()
        if as_json:
            if repaired is not None:
                self.stdout.write(json.dumps({"repaired": repaired}))
            self.stdout.write(json.dumps({"examples": findings.examples}))
            self.stdout.write(json.dumps(findings.summary()))
            return
        if repaired is not None:
            done = ", ".join(f"{count} {name}" for name, count in repaired.items() if count)
            self.stdout.write(f"Repaired: {done or 'nothing needed it'}.")
        for name in doctor.INVARIANTS:
            count = findings.counts[name]
            mark = "ok " if count == 0 else "BAD"
            self.stdout.write(f"{mark} {name}: {count}")
            for example in findings.examples.get(name, []):
                self.stdout.write(f"      {example}")
        self.stdout.write(f"{findings.problems} problem(s).")
