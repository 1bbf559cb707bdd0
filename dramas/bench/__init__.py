"""The dramas app's benchmarks (run by `manage.py bench NAME`; see studio/bench): the drama
board's queries and render time as a drama grows, live progress to 200 open pages, takes
through the whole pipeline against the simulator, the offline voice with the dialog mux, and a
chapter's export against the bare encode of the same frames."""

BENCHMARKS = {
    "page": "dramas.bench.page:page",
    "fanout": "dramas.bench.fanout:fanout",
    "render": "dramas.bench.render:render",
    "speech": "dramas.bench.speech:speech",
    "export": "dramas.bench.export:export",
    "keyframes": "dramas.bench.keyframes:keyframes",
}
