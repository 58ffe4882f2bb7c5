"""deploy/: the Kubernetes manifests of both kustomizations (gateway, sidecar) validate
against the Kubernetes 1.37 OpenAPI schemas (the kubernetes-validate package, strict: no
unknown fields), the cerflow config in each ConfigMap passes `cerflow validate`, and the
pieces agree: probes on /healthz and /readyz at the metrics port the config serves, the
OTLP ports, the ConfigMap mounted as a directory (so hot reload sees its updates), the
checkpoint path on a volume, resource requests, Service ports and selector; and a
ConfigMap update, swapped in as the kubelet does it, is hot-reloaded."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import PurePosixPath

import kubernetes_validate
import pytest
import yaml

from conftest import REPO, key

K8S_VERSION = "1.37.0"
KUSTOMIZATIONS = [REPO / "deploy", REPO / "deploy" / "sidecar"]


def documents(kdir):
    k = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    docs = []
    for res in k["resources"]:
        path = kdir / res
        assert path.is_file(), f"{kdir.name}/kustomization.yaml lists {res}, which does not exist"
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return k, docs


def one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, (kind, len(found))
    return found[0]


@pytest.mark.parametrize("kdir", KUSTOMIZATIONS, ids=["gateway", "sidecar"])
def test_manifests_match_the_kubernetes_schemas(kdir):
    _, docs = documents(kdir)
    for d in docs:
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    # The check does judge: an unknown field and a wrong type are refused.
    dep = copy.deepcopy(one(docs, "Deployment"))
    dep["spec"]["template"]["spec"]["bogus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    dep = copy.deepcopy(one(docs, "Deployment"))
    dep["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


@pytest.mark.parametrize("kdir", KUSTOMIZATIONS, ids=["gateway", "sidecar"])
def test_the_pieces_agree(kdir, cerflow_bin, tmp_path):
    k, docs = documents(kdir)
    cm = one(docs, "ConfigMap")
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    cerflow = [c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == "cerflow"]
    assert len(cerflow) == 1
    c = cerflow[0]
    assert [i["name"] for i in k["images"]] == [c["image"]]

    # The config: valid, and where the container's --config points.
    (tmp_path / "cerflow.yaml").write_text(cm["data"]["cerflow.yaml"])
    check = subprocess.run([str(cerflow_bin), "validate", "--config", str(tmp_path / "cerflow.yaml")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    cfg = yaml.safe_load(cm["data"]["cerflow.yaml"])
    config_path = PurePosixPath(c["args"][c["args"].index("--config") + 1])
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_mount = next(m for m in mounts.values() if PurePosixPath(m["mountPath"]) == config_path.parent)
    assert "subPath" not in config_mount, "a subPath mount never sees ConfigMap updates: no hot reload"
    assert volumes[config_mount["name"]]["configMap"]["name"] == cm["metadata"]["name"]
    assert config_path.name in cm["data"]

    # The checkpoint is on a volume, not in the container's (read-only) filesystem.
    ckpt = PurePosixPath(cfg["slo"]["checkpoint"]["path"])
    ckpt_mount = next(m for m in mounts.values() if PurePosixPath(m["mountPath"]) == ckpt.parent)
    assert not ckpt_mount.get("readOnly", False)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True

    # Probes on the metrics port the config serves.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    metrics_port = port_of(cfg["exporters"]["prometheus"]["endpoint"])
    assert not cfg["exporters"]["prometheus"]["endpoint"].startswith("127."), "Prometheus must reach it"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path and ports[get["port"]] == metrics_port, probe
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]

    if kdir.name == "sidecar":
        assert c["restartPolicy"] == "Always"  # a native sidecar: up before the app, down after it
        otlp = cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        assert otlp.startswith("127.0.0.1:")
        app = pod["containers"][0]
        env = {e["name"]: e["value"] for e in app["env"]}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{otlp}"
        return

    # Gateway: the Service reaches every named port of the pod, with the pod's labels.
    assert ports["otlp-grpc"] == port_of(cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    assert ports["otlp-http"] == port_of(cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"])
    svc = one(docs, "Service")
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert {p["targetPort"] for p in svc["spec"]["ports"]} == set(ports)
    pvc = one(docs, "PersistentVolumeClaim")
    assert volumes[ckpt_mount["name"]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"


def test_a_configmap_update_is_hot_reloaded(start_cerflow):
    """The kubelet updates a ConfigMap volume by writing a new directory and renaming the
    `..data` symlink over the old one; the config file is a symlink through `..data`.
    cerflow's watcher (file metadata, checked every second) must see that swap."""
    cf = start_cerflow("journeys:\n  - name: checkout\n    match: {span_name: POST /checkout}\n")
    d = cf.config_path.parent
    text = cf.config_path.read_text()

    def publish(name: str, content: str):
        (d / name).mkdir()
        (d / name / "cerflow.yaml").write_text(content)
        os.symlink(name, d / "..data_tmp")
        os.replace(d / "..data_tmp", d / "..data")

    # The layout as the kubelet first creates it (the switch from a plain file is one reload).
    publish("..v1", text)
    os.symlink("..data/cerflow.yaml", d / "cerflow.yaml.tmp")
    os.replace(d / "cerflow.yaml.tmp", cf.config_path)
    cf.wait_for({key("cerflow_config_reloads_total"): 1, key("cer_definition_info", version="e2e"): 1})
    # An update: only `..data` moves.
    publish("..v2", text.replace("version: e2e", "version: e2e-v2"))
    cf.wait_for({
        key("cerflow_config_reloads_total"): 2,
        key("cer_definition_info", version="e2e-v2"): 1,
        key("cerflow_config_reload_failures_total"): 0,
    })
