"""The dramas app's benchmarks (run by `manage.py bench NAME`; see studio/bench): the drama
board's queries and render time as a drama grows, live progress to 200 open pages, takes
through the whole pipeline against the simulator, the offline voice with the dialog mux, a
chapter's export against the bare encode of the same frames, and the hot pages under 20
concurrent clients while a chapter renders, one web process against one per core."""

BENCHMARKS = {
    "page": "dramas.bench.page:page",
    "fanout": "dramas.bench.fanout:fanout",
    "render": "dramas.bench.render:render",
    "speech": "dramas.bench.speech:speech",
    "export": "dramas.bench.export:export",
    "keyframes": "dramas.bench.keyframes:keyframes",
    "load": "dramas.bench.load:load",
}
