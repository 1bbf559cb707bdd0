"""`python manage.py provider_sim --port P [--fault-5xx 0.1 ...]`: the loopback vendor simulator.

Point WRITER_BASE_URL at http://HOST:P/v1, VIDEO_BASE_URL at http://HOST:P/v1 and
LIPSYNC_BASE_URL at http://HOST:P/v2. Fault rates apply to every route; per-route rates and
scripted faults go through `POST /_sim/config` (see studio/providers/sim/control.py).
"""

import asyncio
import sys

from django.core.management.base import BaseCommand

from studio.providers.sim.server import Simulator
from studio.providers.sim.state import RouteFaults, SimConfig

# option -> RouteFaults field
FAULT_OPTIONS = {
    "fault_5xx": "error_5xx",
    "fault_429": "rate_429",
    "fault_quota": "quota",
    "fault_hang": "hang",
    "fault_malformed": "malformed",
    "fault_drop": "drop",
    "fault_stream_error": "stream_error",
    "fault_cut_stream": "cut_stream",
    "fault_slow_stream": "slow_stream",
    "fault_fail": "fail",
    "fault_reject": "reject",
}


def build_config(options: dict) -> SimConfig:
    rates = {field: float(options.get(option) or 0) for option, field in FAULT_OPTIONS.items()}
    return SimConfig(
        seed=options.get("seed") or 0,
        latency_ms=options.get("latency_ms") or 0.0,
        latency_sigma=options.get("latency_sigma") or 0.0,
        retry_after_s=options.get("retry_after") or 1.0,
        hang_s=options.get("hang_s") or 30.0,
        slow_stream_s=options.get("slow_stream_s") or 0.3,
        job_s=options.get("job_s") if options.get("job_s") is not None else 3.0,
        drift_rate=options.get("drift") or 0.0,
        drift_face=options.get("drift_face") or "",
        api_key=options.get("api_key") or "",
        usage_style=options.get("usage_style") or "openai",
        faults={"*": RouteFaults(**rates)} if any(rates.values()) else {},
    )


class Command(BaseCommand):
    help = "Serve the provider simulator: chat, video and lip-sync wire formats, with faults."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8100, help="0 picks a free port")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--latency-ms", type=float, default=0.0, help="median latency")
        parser.add_argument(
            "--latency-sigma", type=float, default=0.0, help="lognormal spread (0 = fixed)"
        )
        parser.add_argument("--job-s", type=float, default=3.0, help="seconds a job takes")
        parser.add_argument("--retry-after", type=float, default=1.0, help="seconds, on 429")
        parser.add_argument("--hang-s", type=float, default=30.0, help="length of a hang")
        parser.add_argument("--slow-stream-s", type=float, default=0.3)
        parser.add_argument("--drift", type=float, default=0.0, help="share of drifted videos")
        parser.add_argument("--drift-face", default="", help="image of the drift face")
        parser.add_argument("--api-key", default="", help="require this key")
        parser.add_argument("--usage-style", choices=["openai", "deepseek"], default="openai")
        for option in FAULT_OPTIONS:
            parser.add_argument(
                "--" + option.replace("_", "-"), type=float, default=0.0, metavar="RATE"
            )

    def handle(self, *args, host: str, port: int, **options) -> None:
        config = build_config(options)
        try:
            asyncio.run(self._serve(config, host, port))
        except KeyboardInterrupt:
            self.stdout.write("provider_sim stopped")

    async def _serve(self, config: SimConfig, host: str, port: int) -> None:
        simulator = Simulator(config)
        url = await simulator.start(host, port)
        # Scripts (and the ratelimit benchmark) read this line to find the port.
        self.stdout.write(f"provider_sim listening on {url}")
        sys.stdout.flush()
        self.stdout.flush()
        try:
            await asyncio.Event().wait()
        finally:
            await simulator.stop()
