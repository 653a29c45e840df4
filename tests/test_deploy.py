"""The container and deployment files: Dockerfile, docker-compose, Kubernetes, Prometheus, Grafana.

No Docker engine is needed: the manifests are parsed and checked against the code (metric names,
settings keys, secrets), and the Dockerfile's wheel build and install are replayed in a fresh
virtual environment (the slow test).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from receiver.config.loader import SECRET_SOURCES, load_settings
from receiver.config.settings import Settings
from receiver.routing.config import load_routes

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "kubernetes" / "base"
OVERLAY = DEPLOY / "kubernetes" / "overlays" / "example"
DOCKERFILE = ROOT / "Dockerfile"
K8S_README = DEPLOY / "kubernetes" / "README.md"
APP_LABEL = "graph-alert-receiver"


# --- helpers -------------------------------------------------------------------------------


def _docs(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def _k8s_objects(folder: Path = BASE) -> list[dict[str, Any]]:
    return [
        d for p in sorted(folder.glob("*.yaml")) if p.name != "kustomization.yaml" for d in _docs(p)
    ]


def _of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def _deployments() -> list[dict[str, Any]]:
    return _of_kind(_k8s_objects(), "Deployment")


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


# Metric names: every constructor in receiver/, with what the exposition adds to each.
_METRIC_CTOR = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary|GaugeMetricFamily|CounterMetricFamily|"
    r"HistogramMetricFamily|SummaryMetricFamily)\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\""
)


def exposed_metric_names() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "receiver").rglob("*.py"):
        for kind, name in _METRIC_CTOR.findall(path.read_text(encoding="utf-8")):
            if kind in ("Counter", "CounterMetricFamily"):
                base = name.removesuffix("_total")
                names |= {base + "_total", base + "_created"}
            elif kind in ("Histogram", "HistogramMetricFamily"):
                names |= {name + s for s in ("_bucket", "_sum", "_count", "_created")}
            elif kind in ("Summary", "SummaryMetricFamily"):
                names |= {name, name + "_sum", name + "_count", name + "_created"}
            else:
                names.add(name)
    return names


_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (labels, functions and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def _promql_exprs() -> Iterator[tuple[str, str]]:
    for group in _docs(DEPLOY / "prometheus" / "alerts.yml")[0]["groups"]:
        for rule in group["rules"]:
            yield f"rule {rule.get('alert') or rule.get('record')}", str(rule["expr"])
    dashboard = json.loads((DEPLOY / "grafana" / "receiver-dashboard.json").read_text("utf-8"))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation holds directly (through Optional and unions, not lists)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) is list:
        return []
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out.extend(_models_in(arg))
    return out


def _list_items(annotation: Any) -> list[Any]:
    """The item types of the lists an annotation can hold (through Optional and unions)."""
    if typing.get_origin(annotation) is list:
        return [typing.get_args(annotation)[0]]
    return [item for arg in typing.get_args(annotation) for item in _list_items(arg)]


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_is_secret(a) for a in typing.get_args(annotation))


def settings_path_exists(parts: list[str], annotation: Any = Settings) -> bool:
    """Whether RECEIVER_<PARTS joined by __> names a key of the settings (lists by index)."""
    if not parts:
        return True
    head, rest = parts[0], parts[1:]
    if head.isdigit():
        return any(settings_path_exists(rest, item) for item in _list_items(annotation))
    for model in _models_in(annotation):
        fields = model.model_fields
        if head in fields and settings_path_exists(rest, fields[head].annotation):
            return True
        for suffix in SECRET_SOURCES:
            name = head.removesuffix(suffix)
            if (
                not rest
                and head.endswith(suffix)
                and name in fields
                and _is_secret(fields[name].annotation)
            ):
                return True
    return False


def env_name_understood(name: str) -> bool:
    if name in ("RECEIVER_CONFIG", "REDIS_URL"):
        return True
    if not name.startswith("RECEIVER_"):
        return False
    parts = name.removeprefix("RECEIVER_").lower().split("__")
    return all(parts) and settings_path_exists(parts)


def documented_secrets() -> dict[str, set[str]]:
    """Secrets the README tells the user to create: {name: {keys}} from its table."""
    out: dict[str, set[str]] = {}
    for line in K8S_README.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 2:
            out[cells[0].strip("`")] = set(re.findall(r"`([^`]+)`", cells[1]))
    return out


def known_secrets() -> dict[str, set[str]]:
    secrets = documented_secrets()
    for obj in _of_kind(_k8s_objects(), "Secret"):
        keys = set(obj.get("data", {})) | set(obj.get("stringData", {}))
        secrets.setdefault(obj["metadata"]["name"], set()).update(keys)
    return secrets


def _config_map(name: str) -> dict[str, str]:
    for obj in _of_kind(_k8s_objects(), "ConfigMap"):
        if obj["metadata"]["name"] == name:
            return dict(obj["data"])
    raise AssertionError(f"no ConfigMap {name} in the base")


def _file_refs(node: Any) -> Iterator[tuple[str, str]]:
    """(key, path) of every ``*_file`` key naming an absolute path (secrets, keys)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if (
                isinstance(key, str)
                and key.endswith("_file")
                and isinstance(value, str)
                and value.startswith("/")
            ):
                yield key, value
            else:
                yield from _file_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _file_refs(item)


# --- (1) everything parses; PromQL names real metrics --------------------------------------


def test_every_deploy_file_parses() -> None:
    yamls = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert len(yamls) >= 12
    for path in yamls:
        assert _docs(path), f"{path} is empty"
    dashboard = json.loads((DEPLOY / "grafana" / "receiver-dashboard.json").read_text("utf-8"))
    assert dashboard["schemaVersion"] == 39
    assert dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_metric_names_are_collected_from_the_code() -> None:
    names = exposed_metric_names()
    for expected in (
        "receiver_web_slow_answer_share",
        "receiver_web_items_total",
        "receiver_web_ack_seconds_bucket",
        "receiver_deliveries_total",
        "receiver_subscription_seconds_to_expiry",
    ):
        assert expected in names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (sink) (rate(receiver_deliveries_total{outcome="dead_lettered"}[15m])) > 0',
            {"receiver_deliveries_total"},
        ),
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m:1m] offset 1h)))", {"x_bucket"}),
        ("a / on (tenant) group_left b < 24 * 3600", {"a", "b"}),
    ],
)
def test_promql_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_promql_uses_only_existing_metrics() -> None:
    known = exposed_metric_names()
    seen = 0
    for where, expr in _promql_exprs():
        used = promql_metric_names(expr)
        assert used, f"{where}: no metric in {expr!r}"
        assert used <= known, f"{where}: unknown metric(s) {sorted(used - known)}"
        seen += 1
    assert seen >= 10


def test_alert_rules_cover_the_brief() -> None:
    rules = {
        r["alert"]: r
        for g in _docs(DEPLOY / "prometheus" / "alerts.yml")[0]["groups"]
        for r in g["rules"]
    }
    exprs = " ".join(str(r["expr"]) for r in rules.values())
    assert "receiver_subscription_seconds_to_expiry" in exprs
    assert 'receiver_deliveries_total{outcome="dead_lettered"}' in exprs
    slow = [str(r["expr"]) for r in rules.values() if "slow_answer_share" in str(r["expr"])]
    assert all('threshold="2.9"' in e for e in slow)  # Graph's slow answer is over 2,900 ms
    assert {e.rsplit(" ", 1)[1] for e in slow} == {"0.05", "0.1", "0.15"}  # warn, delay, drop
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), name
        assert rule["annotations"]["summary"], name


# --- (2) Kubernetes ------------------------------------------------------------------------


def test_base_kustomization_lists_every_manifest() -> None:
    kustomization = _docs(BASE / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    kinds = {o["kind"] for o in _k8s_objects()}
    assert {
        "Deployment",
        "Service",
        "Ingress",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds


def test_roles_and_replicas() -> None:
    by_role = {d["metadata"]["name"]: d for d in _deployments()}
    assert set(by_role) == {"receiver-web", "receiver-worker", "receiver-scheduler"}
    for name, deployment in by_role.items():
        role = name.removeprefix("receiver-")
        (container,) = _containers(deployment)
        assert container["args"] == [role]
        assert container["image"] == APP_LABEL
    assert by_role["receiver-scheduler"]["spec"]["replicas"] == 2
    assert "replicas" not in by_role["receiver-web"]["spec"], "the HPA owns web's replicas"


def test_containers_are_probed_limited_and_unprivileged() -> None:
    for deployment in _deployments():
        pod = deployment["spec"]["template"]["spec"]
        pod_security = pod.get("securityContext", {})
        for container in _containers(deployment):
            where = f"{deployment['metadata']['name']}/{container['name']}"
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[part]), f"{where}: {part}"
            security = container["securityContext"]
            non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
            assert non_root is True, where
            assert security.get("runAsUser", pod_security.get("runAsUser")) == 10001, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert "livenessProbe" in container, where
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            if "http" in ports:  # the web: both probes, over HTTP, on its own port
                for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                    get = container[probe]["httpGet"]
                    assert get["path"] == path, where
                    assert get["port"] in ports or get["port"] in ports.values(), where
            else:  # workers and the scheduler: an exec liveness; metrics on their own port
                assert "exec" in container["livenessProbe"], where
                assert ports == {"metrics": 9108}, where


def test_web_is_served_scaled_and_protected() -> None:
    objects = _k8s_objects()
    (service,) = _of_kind(objects, "Service")
    assert service["spec"]["ports"][0]["port"] == 8080
    web = next(d for d in _deployments() if d["metadata"]["name"] == "receiver-web")
    labels = web["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (ingress,) = _of_kind(objects, "Ingress")
    tls = ingress["spec"]["tls"]
    assert tls and tls[0]["secretName"]
    hosts = {r["host"] for r in ingress["spec"]["rules"]}
    assert hosts <= set(tls[0]["hosts"]), "every host is served over TLS"
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["path"].startswith("/webhooks/"), "only the webhooks are published"
            # (triage actions, when on, are added by an overlay: deploy/kubernetes/README.md)
            assert path["backend"]["service"]["name"] == service["metadata"]["name"]
    (hpa,) = _of_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "receiver-web"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    pdbs = {p["metadata"]["name"]: p for p in _of_kind(objects, "PodDisruptionBudget")}
    assert pdbs["receiver-web"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    policies = _of_kind(objects, "NetworkPolicy")
    ingress_ports = {
        p["port"]
        for pol in policies
        for rule in pol["spec"].get("ingress", [])
        for p in rule.get("ports", [])
    }
    egress_ports = {
        p["port"]
        for pol in policies
        for rule in pol["spec"].get("egress", [])
        for p in rule.get("ports", [])
    }
    assert ingress_ports == {8080, 9108}  # the web, and the metrics port of the other roles
    assert {443, 6379, 53} <= egress_ports


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("RECEIVER_CONFIG", True),
        ("REDIS_URL", True),
        ("RECEIVER_WEB__PUBLIC_URL", True),
        ("RECEIVER_TENANTS__0__CLIENT_SECRET_FILE", True),
        ("RECEIVER_TENANTS__0__CERTIFICATE__PASSPHRASE_ENV", True),
        ("RECEIVER_SINKS__1__PATH", True),
        ("RECEIVER_REDIS__PASSWORD_FILE", True),
        ("RECEIVER_WEB__PORT_FILE", False),
        ("RECEIVER_WEB__PORTS", False),
        ("RECEIVER_TENANTS__CLIENT_ID", False),
        ("RECEIVER_WEB", True),
        ("RECEIVER_WEB____PORT", False),
        ("RECEIVER_NOPE", False),
    ],
)
def test_env_name_check(name: str, ok: bool) -> None:
    assert env_name_understood(name) is ok


def test_env_vars_and_references_are_understood() -> None:
    objects = _k8s_objects()
    config_maps = {o["metadata"]["name"]: o["data"] for o in _of_kind(objects, "ConfigMap")}
    secrets = known_secrets()
    assert secrets, "the README documents the Secrets the user creates"
    for deployment in _deployments():
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for volume in volumes.values():
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, volume
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, volume
        for container in _containers(deployment):
            where = f"{deployment['metadata']['name']}/{container['name']}"
            names = [e["name"] for e in container["env"]]
            assert "RECEIVER_CONFIG" in names, where
            for env in container["env"]:
                assert env_name_understood(env["name"]), f"{where}: {env['name']}"
                source = env.get("valueFrom", {})
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    assert ref["key"] in secrets.get(ref["name"], set()), f"{where}: {ref}"
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    assert ref["key"] in config_maps.get(ref["name"], {}), f"{where}: {ref}"
            for mount in container["volumeMounts"]:
                assert mount["name"] in volumes, f"{where}: {mount}"
    (ingress,) = _of_kind(objects, "Ingress")
    assert ingress["spec"]["tls"][0]["secretName"] in secrets


def test_config_map_secret_files_are_mounted_in_every_role() -> None:
    data = _config_map("receiver-config")
    settings = yaml.safe_load(data["receiver.yaml"])
    refs = list(_file_refs(settings))
    assert refs, "the example ConfigMap shows secrets given as files"
    secrets = known_secrets()
    for deployment in _deployments():
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in _containers(deployment):
            where = f"{deployment['metadata']['name']}/{container['name']}"
            mounts = {
                m["mountPath"].rstrip("/"): volumes[m["name"]] for m in container["volumeMounts"]
            }
            config_mount = mounts[
                str(
                    Path(
                        next(e["value"] for e in container["env"] if e["name"] == "RECEIVER_CONFIG")
                    ).parent
                )
            ]
            assert config_mount["configMap"]["name"] == "receiver-config", where
            for key, path in refs:
                folder, file = str(Path(path).parent), Path(path).name
                assert folder in mounts, f"{where}: {key} {path} is not in a mounted volume"
                secret = mounts[folder]["secret"]
                assert "items" not in secret, "mount whole Secrets: every key is a file"
                assert file in secrets[secret["secretName"]], (
                    f"{where}: {key}: key {file} of Secret {secret['secretName']} undocumented"
                )


def _fake_secret(name: str) -> str:
    return "https://hooks.example.com/secret-token" if "url" in name else "not-a-real-secret"


def test_config_map_settings_are_valid(tmp_path: Path) -> None:
    data = _config_map("receiver-config")
    text = data["receiver.yaml"]
    for _key, path in _file_refs(yaml.safe_load(text)):
        fake = tmp_path / "secrets" / Path(path).relative_to("/")
        fake.parent.mkdir(parents=True, exist_ok=True)
        fake.write_text(_fake_secret(fake.name) + "\n", encoding="utf-8")
        text = text.replace(path, str(fake))
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    for name, content in data.items():
        (config_dir / name).write_text(text if name == "receiver.yaml" else content, "utf-8")
    env = _config_map("receiver-env")
    settings = load_settings(
        config_dir / "receiver.yaml",
        environ={
            "REDIS_URL": "rediss://:password@redis:6379/0",
            "RECEIVER_WEB__PUBLIC_URL": env["public_url"],
            "RECEIVER_LOGGING__LEVEL": env["log_level"],
        },
    )
    assert settings.web.host == "0.0.0.0"
    assert settings.web.port == 8080
    assert settings.web.notification_url.startswith("https://")
    assert settings.routes_file is not None
    load_routes(settings.routes_file, [s.name for s in settings.sinks])


def test_overlay_patches_what_the_brief_names() -> None:
    kustomization = _docs(OVERLAY / "kustomization.yaml")[0]
    assert kustomization["resources"] == ["../../base"]
    assert kustomization["images"][0]["name"] == APP_LABEL
    assert kustomization["images"][0]["newTag"]
    assert kustomization["replicas"]
    targets = {(p["target"]["kind"], p["target"]["name"]) for p in kustomization["patches"]}
    assert ("Ingress", "receiver-web") in targets
    assert ("ConfigMap", "receiver-env") in targets


# --- docker-compose ------------------------------------------------------------------------


def test_compose_file() -> None:
    compose = _docs(DEPLOY / "docker-compose.yml")[0]
    services = compose["services"]
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert "--appendonly" in redis["command"]
    assert any(v.endswith(":/data") for v in redis["volumes"])
    for role in ("web", "worker", "scheduler"):
        service = services[role]
        assert service["command"] == [role]
        assert "profiles" not in service
        assert "REDIS_URL" in service["environment"]
        assert any(v.endswith(":/etc/receiver/receiver.yaml:ro") for v in service["volumes"])
    assert "8080:8080" in services["web"]["ports"]
    simulator = services["simulator"]
    assert simulator["profiles"] == ["simulator"]
    assert simulator["command"][:4] == ["simulator", "--host", "0.0.0.0", "--allow-http"]
    for service in services.values():
        for name in service.get("environment", {}):
            assert env_name_understood(name), name


def test_compose_settings_are_valid() -> None:
    settings = load_settings(
        DEPLOY / "compose" / "receiver.yaml", environ={"REDIS_URL": "redis://redis:6379/0"}
    )
    assert settings.redis.url == "redis://redis:6379/0"


# --- (3) the Dockerfile --------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage: [(INSTRUCTION, arguments), ...], continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, args.strip()))
    return stages


def _pip_runs(stage: list[tuple[str, str]]) -> list[list[str]]:
    runs = []
    for instruction, args in stage:
        if instruction != "RUN":
            continue
        words = [w for w in shlex.split(args) if not w.startswith("--mount=")]
        if words[:2] in (["pip", "wheel"], ["pip", "install"]):
            runs.append(words)
    return runs


def test_dockerfile_shape() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    build, final = stages[0], stages[-1]
    assert _pip_runs(build) == [
        ["pip", "wheel", "--no-deps", "-w", "/wheels", "."],
        ["pip", "wheel", "-w", "/wheels", "."],
    ]
    assert _pip_runs(final) == [
        ["pip", "install", "--no-index", "--find-links=/wheels", "graph-alert-receiver"]
    ]
    final_text = "\n".join(f"{i} {a}" for i, a in final)
    users = [a for i, a in final if i == "USER"]
    assert users, "the final stage sets a USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert users[-1].split(":")[0] in ("10001", "receiver")
    assert "--uid 10001" in final_text
    healthchecks = [a for i, a in final if i == "HEALTHCHECK"]
    assert healthchecks and "http://127.0.0.1:8080/healthz" in healthchecks[-1]
    assert "urllib" in healthchecks[-1]
    for forbidden in ("gcc", "build-essential", "g++", "clang", "apt-get install"):
        assert forbidden not in final_text, forbidden
    assert ("EXPOSE", "8080") in final
    envs = " ".join(a for i, a in final if i == "ENV")
    assert "RECEIVER_CONFIG=/etc/receiver/receiver.yaml" in envs
    for name in re.findall(r"\b([A-Z][A-Z0-9_]*)=", envs):
        assert name.startswith(("PIP_", "PYTHON")) or env_name_understood(name), name
    assert ("ENTRYPOINT", '["receiver"]') in final
    assert ("CMD", '["serve"]') in final
    assert final[0][1].startswith(("python:3.11-slim", "${PYTHON_IMAGE}"))
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE.read_text(encoding="utf-8")


def test_dockerignore_keeps_the_context_small_and_complete() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {
        ".venv",
        ".git",
        ".receiver",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "**/__pycache__",
    } <= ignored
    for instruction, args in dockerfile_stages()[0]:
        if instruction == "COPY":
            for source in shlex.split(args)[:-1]:
                assert source not in ignored
                assert (ROOT / source).exists(), source


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RECEIVER_", "PIP_", "PYTHON", "VIRTUAL_ENV")) and k != "REDIS_URL"
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args,
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{shlex.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_dockerfile_install_steps_replayed(tmp_path: Path) -> None:
    """Stage 1's COPY and `pip wheel` lines, then stage 2's `pip install`, in fresh venvs."""
    stages = dockerfile_stages()
    build, final = stages[0], stages[-1]
    # The build context, as stage 1 copies it (not the work tree: builds write into it).
    context = tmp_path / "src"
    context.mkdir()
    for instruction, args in build:
        if instruction != "COPY":
            continue
        *sources, destination = shlex.split(args)
        into = destination.endswith("/") or destination == "."
        for source in sources:
            origin = ROOT / source
            target = context / destination / origin.name if into else context / destination
            if origin.is_dir():
                shutil.copytree(
                    origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)
    assert (context / "pyproject.toml").is_file()
    assert (context / "receiver" / "__init__.py").is_file()
    wheels = tmp_path / "wheels"

    def replay(words: list[str], venv: Path, cwd: Path) -> None:
        args = [str(venv / "bin" / "python"), "-m", *words]
        args = [a.replace("/wheels", str(wheels)) for a in args]
        _run(args, cwd, timeout=300)

    builder = tmp_path / "build-venv"
    _run([sys.executable, "-m", "venv", str(builder)], tmp_path, timeout=120)
    for words in _pip_runs(build):
        replay(words, builder, context)
    assert list(wheels.glob("graph_alert_receiver-*.whl"))

    runtime = tmp_path / "runtime-venv"
    _run([sys.executable, "-m", "venv", str(runtime)], tmp_path, timeout=120)
    for words in _pip_runs(final):
        replay(words, runtime, tmp_path)

    receiver = str(runtime / "bin" / "receiver")
    version = _run([receiver, "version"], tmp_path, timeout=60)
    assert version.stdout.startswith("receiver ")
    checked = _run(
        [receiver, "config", "check", str(ROOT / "config" / "receiver.example.yaml")],
        tmp_path,
        timeout=60,
    )
    assert "OK" in checked.stdout
    # The image's HEALTHCHECK command is valid Python for the installed interpreter.
    healthcheck = next(a for i, a in final if i == "HEALTHCHECK")
    code = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert code[:2] == ["python", "-c"]
    compile(code[2], "<healthcheck>", "exec")
