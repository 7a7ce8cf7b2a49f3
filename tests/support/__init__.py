"""What the tests share, imported as `tests.support.<module>` (fixtures stay in conftest.py):

- services: the PostgreSQL/Redis addresses, require_service (skip, or fail under CI=true),
  free_port, wait_until (a condition, never a fixed sleep)
- postgres: fresh_database (a new database, empty or cloned from a template, dropped after)
- processes: stop_process_group, settings_env, WorkerProcess (a real `lethe worker`)
- service: make_settings, create_key (an API key row)
- requests: erasure_body, submit, wait_for_status, training_ids, RecordingDispatcher,
  recording_app, dispatched_job, download
- checkpoints: sha256, load_model, accuracy_and_confidence
"""
