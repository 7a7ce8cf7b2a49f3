"""Time a registration job over an ImageFolder of small PNGs, and count the file reads.

    python -m benchmarks.registration_reads --n-train 3000 --n-val 500 --n-test 500 \
        --dir /tmp/regbench/shapes --repeats 2 [--arch torchvision:resnet18] [--json out.json]

Writes the generated shapes set (``unlearning.shapes``, 32x32 RGB PNGs) once under ``--dir``;
per repeat, a fresh SQLite database, store and feature cache, registers a random-init
``--arch`` (a ``.pt`` state dict) with the folder as a dataset by reference through the real
API (in process, jobs recorded, not dispatched), then runs the registration job in this
process as a worker would (``workers.jobs.run``), timing it (wall and this process's CPU
time: the job, its heartbeat thread and torch's threads all run here). Every
``LocalLocation.read`` is counted (DataLoader worker processes are not used:
``LETHE_DATA_WORKERS=0``), so the run says how many times each manifest row's file was
read.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--dir", default="/tmp/regbench/shapes")
    parser.add_argument("--arch", default="torchvision:resnet18")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)

    import torch
    import torchvision
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from app.auth.service import create_key
    from app.core.config import Settings
    from app.core.db import session_scope
    from app.core.migrate import upgrade
    from app.jobs.models import Job
    from app.main import create_app
    from unlearning import shapes, sources
    from workers.jobs import run
    from workers.runtime import build_runtime

    folder = Path(args.dir)
    total = args.n_train + args.n_val + args.n_test
    if not (folder / "manifest.csv").exists():
        t0 = time.perf_counter()
        shapes.write_image_folder(folder, args.n_train, args.n_val, args.n_test)
        print(f"wrote {total} PNGs under {folder} in {time.perf_counter() - t0:.1f} s")
    manifest = (folder / "manifest.csv").read_bytes()

    torch.manual_seed(0)
    name = args.arch.removeprefix("torchvision:")
    buf = io.BytesIO()
    torch.save(torchvision.models.get_model(name, num_classes=10).state_dict(), buf)
    checkpoint = buf.getvalue()

    reads: Counter[str] = Counter()
    plain_read = sources.LocalLocation.read

    def counted(self: Any, path: str, start: int = 0, length: int = -1) -> bytes:
        reads[path] += 1
        return plain_read(self, path, start, length)

    sources.LocalLocation.read = counted  # type: ignore[method-assign]

    class Recorder:
        def __init__(self) -> None:
            self.sent: list[str] = []

        def dispatch(self, job_id: str) -> None:
            self.sent.append(job_id)

        def deliver_callbacks(self) -> None:
            pass

        def ping(self) -> bool:
            return False

    runs = []
    load_start = os.getloadavg()
    for k in range(args.repeats):
        tmp = Path(tempfile.mkdtemp(prefix="lethe-regreads-"))
        url = f"sqlite:///{tmp / 'lethe.db'}"
        upgrade(url)
        settings = Settings(
            env="test",
            data_dir=tmp,
            database_url=url,
            dataset_roots=str(folder.parent.resolve()),
            data_workers=0,
            torch_threads=1,
        )
        recorder = Recorder()
        rt = build_runtime(settings, recorder)  # type: ignore[arg-type]
        with session_scope(rt.session_factory, None) as s:
            _, key = create_key(session=s, name="bench", scopes=["admin"])
        app = create_app(
            settings, dispatcher=recorder, session_factory=rt.session_factory, store=rt.store
        )
        with TestClient(app) as client:
            resp = client.post(
                "/v1/models",
                data={
                    "name": f"bench-{k}",
                    "architecture": args.arch,
                    "location": str(folder.resolve()),
                    "layout": "image-folder",
                    "preprocess": '{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}',
                },
                files={"checkpoint": ("m.pt", checkpoint), "manifest": ("m.csv", manifest)},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert resp.status_code == 202, resp.text
            job_id = resp.json()["registration"]["job_id"]
            reads.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            outcome = run(job_id, rt)
            took, cpu = time.perf_counter() - t0, time.process_time() - c0
            model = client.get(
                f"/v1/models/bench-{k}", headers={"Authorization": f"Bearer {key}"}
            ).json()
        with session_scope(rt.session_factory, None) as s:
            job = s.scalar(select(Job).where(Job.id == job_id))
            assert job is not None
            phase = job.phase
        per_file = Counter(reads.values())
        runs.append(
            {
                "outcome": outcome,
                "status": model["status"],
                "final_phase": phase,
                "seconds": round(took, 2),
                "cpu_seconds": round(cpu, 2),
                "files_read": len(reads),
                "reads": sum(reads.values()),
                "files_by_read_count": {str(n): c for n, c in sorted(per_file.items())},
            }
        )
        print(
            f"run {k + 1}: {outcome} ({model['status']}) in {took:.1f} s ({cpu:.1f} s CPU); "
            f"{len(reads)} files, "
            f"{sum(reads.values())} reads; files by times read {dict(sorted(per_file.items()))}"
        )
    result = {
        "rows": total,
        "arch": args.arch,
        "runs": runs,
        "cpus": os.cpu_count(),
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
