"""The Kubernetes deployment (deploy/k8s), checked as far as these machines allow: no API
server can run here, so nothing is applied. Every overlay is rendered by kustomize
(kubectl's), every object is validated against a pinned Kubernetes schema
(kubernetes-validate), and what no schema sees is checked by reading the objects:
the actors' address names the learner's Service and port, the Secrets the pods mount
are the ones the key command writes, selectors match labels, references resolve.
The image's entry point is run for real outside a container: keys from the Secrets'
flat files, a learner and an actor over CurveZMQ."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.keys import K8S_SECRETS
from scripts.procs import HANG_S, ROOT, Proc, free_port_pair, python_path

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir())
KUBERNETES_VERSION = "1.30.0"  # the oldest release the manifests promise to work on
yaml = pytest.importorskip("yaml", reason="pip install -e '.[k8s-check]' (.ci/run does)")


def render(overlay: str) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: it renders the kustomizations")
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def container(job: dict) -> dict:
    (c,) = job["spec"]["template"]["spec"]["containers"]
    return c


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_the_pinned_kubernetes(overlay):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install -e '.[k8s-check]'"
    )
    objects = render(overlay)
    assert {o["kind"] for o in objects} == {"ConfigMap", "Service", "PersistentVolumeClaim", "Job"}
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_parts_refer_to_each_other_correctly(overlay, tmp_path, restore_logging):
    objects = render(overlay)
    jobs, services = by_kind(objects, "Job"), by_kind(objects, "Service")
    config_maps, claims = by_kind(objects, "ConfigMap"), by_kind(objects, "PersistentVolumeClaim")
    learner, actors = jobs["zmq-a3c-learner"], jobs["zmq-a3c-actors"]
    (service,) = services.values()
    lc, ac = container(learner), container(actors)
    learner_pod = learner["spec"]["template"]
    # The actors connect to the Service, on the port that reaches the learner's ROUTER.
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert (
        flag(ac["args"], "--learner")
        == f"tcp://{service['metadata']['name']}:{ports['router']['port']}"
    )
    container_ports = {p["name"]: p["containerPort"] for p in lc["ports"]}
    assert {p["targetPort"] for p in ports.values()} <= container_ports.keys()
    assert int(flag(lc["args"], "--port")) == container_ports["router"]
    assert int(flag(lc["args"], "--pub-port")) == container_ports["pub"]
    # The Service selects the learner's pod and nothing else.
    selector = service["spec"]["selector"]
    assert selector.items() <= learner_pod["metadata"]["labels"].items()
    assert not selector.items() <= actors["spec"]["template"]["metadata"]["labels"].items()
    # kubectl logs -l app.kubernetes.io/component=actor tails every actor.
    assert (
        actors["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "actor"
    )
    # One pod per actor, each with its index (its key task-K).
    assert actors["spec"]["completionMode"] == "Indexed"
    assert actors["spec"]["completions"] == actors["spec"]["parallelism"] >= 1

    # The Secrets mounted are the ones scripts/keys.py --k8s-secrets writes.
    def secrets(job):
        return {
            v["secret"]["secretName"]
            for v in job["spec"]["template"]["spec"]["volumes"]
            if "secret" in v
        }

    assert secrets(learner) == {K8S_SECRETS[0]} and secrets(actors) == {K8S_SECRETS[1]}
    # Secret files are root's: a non-root pod reads them only through its fsGroup.
    for job in (learner, actors):
        pod = job["spec"]["template"]["spec"]
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
        (mode,) = {v["secret"]["defaultMode"] for v in pod["volumes"] if "secret" in v}
        assert mode & 0o040 and not mode & 0o007, oct(mode)
    # SIGTERM on Kubernetes is an eviction: exit non-zero, so the pod is replaced (and
    # the learner does not send the actors away); an actor that never finds a learner
    # gives up, and that exit fails the Job instead of looping.
    assert flag(lc["args"], "--signal-exit-code") == "143" == flag(ac["args"], "--signal-exit-code")
    assert float(flag(ac["args"], "--join-timeout")) > 0
    (rule,) = [r for r in actors["spec"]["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    assert {2, 3, 5} <= set(rule["onExitCodes"]["values"])
    # Started = logged since this container started (the entry point marks its start).
    startup = " ".join(lc["startupProbe"]["exec"]["command"])
    assert "-nt /tmp/zmq-a3c-started" in startup
    assert "/tmp/zmq-a3c-started" in (K8S / "entrypoint.sh").read_text()
    # Volumes and ConfigMaps named exist; the run directory is on the claimed volume.
    volumes = {v["name"]: v for v in learner_pod["spec"]["volumes"]}
    assert volumes["runs"]["persistentVolumeClaim"]["claimName"] in claims
    assert volumes["config"]["configMap"]["name"] in config_maps
    env_maps = [e["configMapRef"]["name"] for e in lc["envFrom"]]
    assert all(name in config_maps for name in env_maps)
    mounts = {m["name"]: m["mountPath"] for m in lc["volumeMounts"]}
    assert flag(lc["args"], "--run-dir").startswith(mounts["runs"] + "/")
    assert "--resume" in lc["args"], "a replaced learner pod carries on from the volume"
    # The learner's settings file is one the learner accepts (and the run has a name).
    config_path = flag(lc["args"], "--config")
    assert config_path.startswith(mounts["config"] + "/")
    (learner_config,) = (c for c in config_maps.values() if "learner.toml" in c.get("data", {}))
    toml = tmp_path / "learner.toml"
    toml.write_text(learner_config["data"]["learner.toml"])
    from learner.flags import parse

    cfg, _ = parse(["--config", str(toml)])
    assert cfg.env
    (run_map,) = (config_maps[n] for n in env_maps)
    assert run_map["data"]["RUN_NAME"]


def test_the_gpu_overlay_asks_for_a_gpu_and_the_cuda_image():
    objects = render("gpu-fleet")
    lc = container(by_kind(objects, "Job")["zmq-a3c-learner"])
    assert lc["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert lc["image"].endswith(":cuda")
    config = next(
        c for c in by_kind(objects, "ConfigMap").values() if "learner.toml" in c.get("data", {})
    )
    assert 'device = "cuda"' in config["data"]["learner.toml"]


def secret_volume(secrets_yaml: Path, name: str, into: Path) -> Path:
    """What Kubernetes mounts for Secret ``name``: one read-only file per key."""
    (doc,) = [
        d for d in yaml.safe_load_all(secrets_yaml.read_text()) if d["metadata"]["name"] == name
    ]
    into.mkdir(mode=0o755)
    for key, value in doc["data"].items():
        path = into / key
        path.write_bytes(base64.b64decode(value))
        path.chmod(0o400)
    return into


@pytest.mark.slow
def test_the_entry_point_builds_keys_from_the_secrets_and_an_actor_joins_over_curve(tmp_path):
    keys, secrets_yaml = tmp_path / "keys", tmp_path / "secrets.yaml"
    made = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "keys.py"),
            "--out",
            str(keys),
            "--fleet",
            "2",
            "--k8s-secrets",
            str(secrets_yaml),
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    assert secrets_yaml.stat().st_mode & 0o077 == 0
    learner_secrets = secret_volume(secrets_yaml, K8S_SECRETS[0], tmp_path / "learner-secrets")
    actor_secrets = secret_volume(secrets_yaml, K8S_SECRETS[1], tmp_path / "actor-secrets")
    assert not (actor_secrets / "learner.key_secret").exists(), (
        "no actor holds the learner's secret"
    )
    entry = str(K8S / "entrypoint.sh")
    # The image's `python` is the project's: here, this interpreter's directory first.
    path = f"PATH={Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    started = f"STARTED_FILE={tmp_path / 'started'}"  # not the image's /tmp path
    env = {
        **os.environ,
        "PATH": path[5:],
        "PYTHONPATH": python_path(),
        "STARTED_FILE": started[13:],
    }
    port = free_port_pair()
    run = tmp_path / "run"
    run.mkdir()
    learner = actor = None
    try:
        learner = Proc(
            [
                entry,
                "learner",
                "--actors",
                "0",
                "--port",
                str(port),
                "--run-dir",
                str(run),
                "--max-env-steps",
                "5000",
                "--console",
                "plain",
            ],
            run / "learner.jsonl",
            tmp_path / "learner.stderr",
            prefix=[
                "env",
                path,
                started,
                f"SECRETS_DIR={learner_secrets}",
                f"KEYS_DIR={tmp_path / 'lk'}",
            ],
            python=False,
        )
        actor = Proc(
            [entry, "actor", "--learner", f"tcp://127.0.0.1:{port}", "--run-dir", str(run)],
            run / "actor-task-1.jsonl",
            tmp_path / "actor.stderr",
            prefix=[
                "env",
                path,
                started,
                f"SECRETS_DIR={actor_secrets}",
                f"KEYS_DIR={tmp_path / 'ak'}",
                "JOB_COMPLETION_INDEX=1",
            ],
            python=False,
        )
        enabled = learner.wait_for("curve_enabled", HANG_S)
        assert enabled["authorized"] == ["task-0", "task-1"]
        learner.wait_for("actor_joined", HANG_S, where=lambda e: e["actor_id"] == "task-1")
        assert learner.wait_exit(HANG_S * 3) == 0
        assert actor.wait_exit(HANG_S) == 0
        assert (tmp_path / "lk" / "learner.key_secret").stat().st_mode & 0o077 == 0
        assert (tmp_path / "ak").stat().st_mode & 0o077 == 0
        # An index with no key fails at once with the reason (exit 3: the Job fails).
        lost = subprocess.run(
            [entry, "actor", "--learner", f"tcp://127.0.0.1:{port}"],
            env={
                **env,
                "SECRETS_DIR": str(actor_secrets),
                "KEYS_DIR": str(tmp_path / "x"),
                "JOB_COMPLETION_INDEX": "7",
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert lost.returncode == 3 and "no key for task-7" in lost.stderr
    finally:
        for p in (actor, learner):
            if p is not None:
                if p.popen.poll() is None:
                    p.popen.send_signal(signal.SIGTERM)
                p.stop()
