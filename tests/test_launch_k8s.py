"""``pipeline launch k8s``: manifests checked against Kubernetes' own schemas offline
(kubernetes-validate), and by ``kubectl apply --dry-run=client`` where kubectl is
installed; nothing is applied."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import cli, minimal_study

SECRET = "s3cretPW"


def _study(tmp_path: Path, artifacts: str) -> Path:
    data = minimal_study(
        storage=f"postgresql+psycopg://pipeline:{SECRET}@db.example/studies", artifacts=artifacts
    )
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, str]:
    out = tmp_path / "k8s"
    done = cli(
        "launch", "k8s", str(_study(tmp_path, "s3://bucket/ckpt")), "--workers", "4",
        "--image", "registry.example/pipeline:1", "--storage-secret", "study-db",
        "--namespace", "ml", "--gpus-per-worker", "1", "--cpus-per-trial", "2", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def test_an_indexed_job_of_n_pods_reads_its_storage_from_a_secret(
    written: tuple[Path, str],
) -> None:
    out, printed = written
    assert f"kubectl apply -f {out}" in printed
    config_map, job = yaml.safe_load_all((out / "study.yaml").read_text())
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 4
    (container,) = spec["template"]["spec"]["containers"]
    assert "$(JOB_COMPLETION_INDEX)" in container["args"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "study-db", "key": "url"}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    (rule,) = spec["podFailurePolicy"]["rules"]
    assert rule["action"] == "Ignore" and rule["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert SECRET not in (out / "study.yaml").read_text()
    assert yaml.safe_load(config_map["data"]["study.yaml"])["artifacts"] == "s3://bucket/ckpt"
    assert "ARG TORCH_INDEX" in (out / "Dockerfile").read_text()


def test_the_manifests_validate_against_kubernetes_schemas(written: tuple[Path, str]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    out, _ = written
    for manifest in yaml.safe_load_all((out / "study.yaml").read_text()):
        kubernetes_validate.validate(manifest, "1.31", strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_accepts_the_manifests_client_side(written: tuple[Path, str]) -> None:
    out, _ = written
    # Even a client-side dry run asks the API server which kinds exist.
    probe = subprocess.run(["kubectl", "api-versions"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("kubectl reaches no API server (it needs one even for --dry-run=client)")
    done = subprocess.run(
        ["kubectl", "apply", "--dry-run=client", "--validate=false", "-f", str(out / "study.yaml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "job.batch/pipeline-" in done.stdout


def test_a_local_artifacts_directory_is_refused_for_several_pods(tmp_path: Path) -> None:
    done = cli(
        "launch", "k8s", str(_study(tmp_path, str(tmp_path / "ckpt"))), "--workers", "2",
        "--image", "i", "--storage-secret", "s", "--out", str(tmp_path / "k8s"),
    )  # fmt: skip
    assert done.returncode == 2 and "s3://" in done.stderr
    assert not (tmp_path / "k8s").exists()
