"""``pipeline launch k8s``: a study's workers as one Kubernetes Indexed Job.

It writes manifests and applies nothing: a ConfigMap with the resolved study file, an
Indexed Job whose ``JOB_COMPLETION_INDEX`` becomes ``--worker-index``, the storage URL
from a Secret (``env.valueFrom``, never a literal), and a Dockerfile for the image. A
``podFailurePolicy`` ignores disruptions (preemption, node drain), so a preempted pod is
retried without spending ``backoffLimitPerIndex``; its trial went back to WAITING when
the pod got SIGTERM, and the retry resumes it from its checkpoint on the S3 store.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.exceptions import UsageError

SECRET_KEY = "url"  # the key of the storage URL in the Secret
DOCKERFILE = """\
# The worker image of `pipeline launch k8s`: CPU by default;
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 .
# for CUDA (and run it with --gpus-per-worker).
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX" torch torchvision \\
 && pip install --no-cache-dir -e ".[s3]"
ENTRYPOINT ["pipeline"]
"""


def check_artifacts(artifacts: str | None, workers: int) -> None:
    """Pods share no disk: checkpoints of a multi-pod launch must go to an S3 store.

    Raises:
        UsageError: a local artifacts directory (or none) with more than one worker.
    """
    if workers > 1 and not (artifacts or "").startswith("s3://"):
        raise UsageError(
            f"artifacts: {artifacts or 'a local directory'} is on one pod's disk; a launch "
            "of several pods needs `artifacts: s3://bucket/prefix` in the study file so a "
            "retried trial finds its checkpoint"
        )


def k8s_manifests(
    study: dict[str, Any],
    *,
    workers: int,
    image: str,
    secret: str,
    namespace: str = "default",
    gpus_per_worker: int = 0,
    cpus_per_trial: int = 1,
) -> list[dict[str, Any]]:
    """The ConfigMap and the Indexed Job of a launch (``study``: the resolved study)."""
    name = "pipeline-" + re.sub(r"[^a-z0-9-]", "-", str(study["study_name"]).lower())[:40]
    name = name.rstrip("-")
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-study", "namespace": namespace},
        "data": {"study.yaml": yaml.safe_dump(study, sort_keys=False)},
    }
    container = _container(image, secret, gpus_per_worker, cpus_per_trial)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "completionMode": "Indexed",
            "completions": workers,
            "parallelism": workers,
            "backoffLimitPerIndex": 3,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 120,
                    "containers": [container],
                    "volumes": [{"name": "study", "configMap": {"name": f"{name}-study"}}],
                }
            },
        },
    }
    return [config_map, job]


def _container(
    image: str, secret: str, gpus_per_worker: int, cpus_per_trial: int
) -> dict[str, Any]:
    """The worker container: ``pipeline worker`` with its index, its storage URL from the
    Secret and the study file from the ConfigMap."""
    limits: dict[str, Any] = {"cpu": str(cpus_per_trial), "memory": "4Gi"}
    if gpus_per_worker:
        limits["nvidia.com/gpu"] = str(gpus_per_worker)
    return {
        "name": "worker",
        "image": image,
        "args": [
            "worker",
            "/study/study.yaml",
            "--storage-env",
            "PIPELINE_STORAGE",
            "--worker-index",
            "$(JOB_COMPLETION_INDEX)",
            "--threads",
            str(cpus_per_trial),
        ],
        "env": [
            {
                "name": "PIPELINE_STORAGE",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": SECRET_KEY}},
            }
        ],
        "resources": {"requests": dict(limits), "limits": limits},
        "volumeMounts": [{"name": "study", "mountPath": "/study", "readOnly": True}],
    }


def write_k8s(manifests: list[dict[str, Any]], out: Path) -> str:
    """Write the manifests and the Dockerfile into ``out``; return what to print."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.yaml").write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    (out / "Dockerfile").write_text(DOCKERFILE)
    job = manifests[-1]["metadata"]
    secret = manifests[-1]["spec"]["template"]["spec"]["containers"][0]["env"][0]
    name = secret["valueFrom"]["secretKeyRef"]["name"]
    return (
        f"wrote {out}/study.yaml (ConfigMap, Indexed Job) and {out}/Dockerfile; nothing applied\n"
        f"the image: docker build -f {out}/Dockerfile -t IMAGE . (from the project's root)\n"
        f"the storage: kubectl -n {job['namespace']} create secret generic {name} "
        f"--from-literal={SECRET_KEY}=postgresql+psycopg://...\n"
        f"run it: kubectl apply -f {out}\n"
        f"watch it: kubectl -n {job['namespace']} get pods -l job-name={job['name']}\n"
    )


__all__ = ["DOCKERFILE", "SECRET_KEY", "check_artifacts", "k8s_manifests", "write_k8s"]
