"""Lethe's entry points: the `lethe` command line (`lethe.cli`), the Python HTTP client
(`lethe.client`), the ASGI composition root (`lethe.asgi`) and what operators run once
(`lethe.demo`, `lethe.specs`). The service itself is `app/` (HTTP API), `workers/`
(Celery, the job pipeline, the embedded worker), `unlearning/` (the engine) and
`models_store/` (checkpoint storage); nothing there imports this package."""
