"""Cross-references in deploy/k8s, compose.yaml and the Dockerfiles.

`scripts/k8s_validate.sh` checks each rendered overlay against the Kubernetes schemas; a schema
cannot see that two objects, or an object and the code, disagree on a name. These tests render
each overlay with the pip-installed kubectl (`kubectl kustomize`, offline) and check those
agreements: probe ports, KEDA consumer names against `kiln.common.bus`, ConfigMap and Secret
references, environment variable names against the services' settings, Service and
NetworkPolicy selectors, addresses, mounted paths, the NATS config, shutdown timing and pod
hardening.

Each `check_*` function returns a list of problems (empty when all is well), so the last tests
can feed them a deliberately broken copy of a render and show that the breakage is reported.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import functools
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

# scripts/config_table.py (on pytest's pythonpath): every setting the services read. mypy's
# mypy_path does not list scripts/, so a run on this file alone cannot see it.
import config_table  # type: ignore[import-not-found,unused-ignore]
import crd_validate  # type: ignore[import-not-found,unused-ignore]
import pytest
import yaml
from prometheus_client import REGISTRY

import imagegen.metrics
import tasks.metrics
from kiln.common import bus, metrics, natsauth
from kiln.common.testing import nats_server_binary
from kiln.common.testing.certs import PrivateCa

ROOT = Path(__file__).resolve().parent.parent
OVERLAYS_DIR = ROOT / "deploy" / "k8s" / "overlays"
OVERLAYS = ("dev", "prod", "prod-all-options")
KUBECTL = Path(sys.executable).parent / "kubectl"

# Image repository -> the Kiln service whose settings its containers read.
KILN_IMAGES = {
    "ghcr.io/kiln/auth": "auth",
    "ghcr.io/kiln/tasks": "tasks",
    "ghcr.io/kiln/imagegen": "imagegen",
}
GRPC_PORTS = {"auth": 50051, "tasks": 50052, "imagegen": 50053}
METRICS_PORT = 9464

# Secrets that an overlay expects to exist already (created by a secret manager, never
# committed), with the keys it reads. The prod kustomization.yaml documents the same list.
PREEXISTING_SECRETS: dict[str, dict[str, frozenset[str]]] = {
    "dev": {},
    "prod": {
        "kiln-database": frozenset({"DATABASE_URL"}),
        "kiln-auth-signing-keys": frozenset({"signing-key.pem"}),
        "kiln-nats-credentials": frozenset({"tasks", "imagegen", "auth"}),
    },
    # components/pgbouncer/kustomization.yaml documents the two it adds.
    "prod-all-options": {
        "kiln-database": frozenset({"DATABASE_URL"}),
        "kiln-auth-signing-keys": frozenset({"signing-key.pem"}),
        "kiln-nats-credentials": frozenset({"tasks", "imagegen", "auth"}),
        "kiln-database-pooled": frozenset({"DATABASE_URL"}),
        "kiln-pgbouncer": frozenset({"databases.ini", "userlist.txt"}),
    },
}

CERT_MANAGER_KEYS = ("tls.crt", "tls.key", "ca.crt")
TLS_FILE_SETTINGS = (
    "GRPC_TLS_CERT_FILE", "GRPC_TLS_KEY_FILE", "GRPC_TLS_CLIENT_CA_FILE", "GRPC_CLIENT_CA_FILE",
    "GRPC_CLIENT_CERT_FILE", "GRPC_CLIENT_KEY_FILE", "NATS_TLS_CA_FILE", "NATS_TLS_CERT_FILE",
    "NATS_TLS_KEY_FILE",
)  # fmt: skip
# Connections the overlay's PostgreSQL accepts from Kiln (deploy/k8s/README.md, "Connection
# budget"): dev's in-cluster server allows 100; prod's managed one must allow 200.
CONNECTION_BUDGET = {"dev": 100, "prod": 200, "prod-all-options": 200}
BACKUP_SCRIPTS = ROOT / "deploy" / "k8s" / "base" / "scripts"

POD_TEMPLATE_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob")
PROBES = ("readinessProbe", "livenessProbe", "startupProbe")

Doc = dict[str, Any]


# ---------------------------------------------------------------- rendering and lookups


@functools.cache
def _render(overlay: str) -> tuple[Doc, ...]:
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(OVERLAYS_DIR / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


@dataclasses.dataclass
class Manifests:
    """One rendered overlay, with the Secrets it expects to find already in the cluster."""

    docs: list[Doc]
    preexisting_secrets: dict[str, frozenset[str]]

    def of_kind(self, kind: str) -> list[Doc]:
        """Every object of `kind`."""
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> Doc:
        """The object of `kind` called `name`."""
        matches = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
        return matches[0]

    def workloads(self) -> Iterator[Workload]:
        """Every object that runs pods, with its pod template."""
        for doc in self.docs:
            if doc["kind"] not in POD_TEMPLATE_KINDS:
                continue
            spec = doc["spec"]
            if doc["kind"] == "CronJob":
                spec = spec["jobTemplate"]["spec"]
            template = spec["template"]
            yield Workload(
                doc=doc,
                labels=template.get("metadata", {}).get("labels", {}),
                annotations=template.get("metadata", {}).get("annotations", {}),
                pod=template["spec"],
            )

    def config_maps(self) -> dict[str, dict[str, str]]:
        """ConfigMap name -> its data."""
        return {d["metadata"]["name"]: d.get("data", {}) for d in self.of_kind("ConfigMap")}

    def secrets(self) -> dict[str, dict[str, str | None]]:
        """Secret name -> key -> decoded value (None for the pre-existing ones)."""
        found: dict[str, dict[str, str | None]] = {
            name: dict.fromkeys(keys) for name, keys in self.preexisting_secrets.items()
        }
        for doc in self.of_kind("Secret"):
            values: dict[str, str | None] = {
                k: base64.b64decode(v).decode() for k, v in doc.get("data", {}).items()
            }
            values.update(doc.get("stringData", {}))
            found[doc["metadata"]["name"]] = values
        # cert-manager writes each Certificate's Secret: the chain, its key and the CA.
        for doc in self.of_kind("Certificate"):
            found[doc["spec"]["secretName"]] = dict.fromkeys(CERT_MANAGER_KEYS)
        return found

    def env(self, container: Doc) -> dict[str, str | None]:
        """The environment `container` starts with: name -> value (None when not literal)."""
        config_maps, secrets = self.config_maps(), self.secrets()
        result: dict[str, str | None] = {}
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = config_maps.get(source["configMapRef"]["name"], {})
                result.update({prefix + k: v for k, v in data.items()})
            if "secretRef" in source:
                values = secrets.get(source["secretRef"]["name"], {})
                result.update({prefix + k: v for k, v in values.items()})
        for var in container.get("env", []):
            value = var.get("value")
            ref = var.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                value = config_maps.get(ref["configMapKeyRef"]["name"], {}).get(
                    ref["configMapKeyRef"]["key"]
                )
            elif "secretKeyRef" in ref:
                value = secrets.get(ref["secretKeyRef"]["name"], {}).get(ref["secretKeyRef"]["key"])
            result[var["name"]] = value
        return result

    def pods_matching(self, selector: dict[str, Any]) -> list[Workload]:
        """Pod templates whose labels match a LabelSelector (matchLabels/matchExpressions)."""
        return [w for w in self.workloads() if selector_matches(selector, w.labels)]


@dataclasses.dataclass
class Workload:
    """An object that runs pods, and its pod template."""

    doc: Doc
    labels: dict[str, str]
    annotations: dict[str, str]
    pod: Doc

    @property
    def ref(self) -> str:
        """`Kind/name`, for messages."""
        return f"{self.doc['kind']}/{self.doc['metadata']['name']}"

    def containers(self) -> list[Doc]:
        """Init containers and containers."""
        return [*self.pod.get("initContainers", []), *self.pod["containers"]]

    def port_names_and_numbers(self) -> set[str | int]:
        """Every container port of the pod, by number and by name."""
        found: set[str | int] = set()
        for container in self.containers():
            for port in container.get("ports", []):
                found.add(port["containerPort"])
                if "name" in port:
                    found.add(port["name"])
        return found


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether `labels` satisfy a LabelSelector; an empty selector matches everything."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def kiln_service(container: Doc) -> str | None:
    """The Kiln service an image belongs to (auth, tasks, imagegen), or None."""
    repository = re.sub(r"(@sha256)?:[^/]+$", "", container["image"])
    return KILN_IMAGES.get(repository)


def port_named(container: Doc, name: str) -> int | None:
    """The number of the container port called `name`."""
    for port in container.get("ports", []):
        if port.get("name") == name:
            return int(port["containerPort"])
    return None


def setting_default(variable: str) -> float:
    """The code's default of a numeric setting."""
    return float(config_table.rows()[variable][0])


def migrations_jobs(m: Manifests) -> list[Doc]:
    """The migrations Jobs (their name carries the release, so they are found by label)."""
    return [
        d
        for d in m.of_kind("Job")
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "migrations"
    ]


def load(overlay: str) -> Manifests:
    """A fresh, mutable copy of one rendered overlay."""
    return Manifests(
        docs=copy.deepcopy(list(_render(overlay))),
        preexisting_secrets=dict(PREEXISTING_SECRETS[overlay]),
    )


# ---------------------------------------------------------------- the checks


def check_probes(m: Manifests) -> list[str]:
    """Probe ports are ports of their container; Kiln containers probe gRPC on GRPC_PORT, or
    on GRPC_HEALTH_PORT (the plaintext health server) when it is set."""
    problems = []
    for w in m.workloads():
        for c in w.containers():
            declared = {p["containerPort"] for p in c.get("ports", [])}
            declared |= {p["name"] for p in c.get("ports", []) if "name" in p}
            for probe_name in PROBES:
                probe = c.get(probe_name)
                if probe is None:
                    continue
                for action in ("grpc", "httpGet", "tcpSocket"):
                    if action in probe and probe[action]["port"] not in declared:
                        problems.append(
                            f"{w.ref} container {c['name']}: {probe_name} port "
                            f"{probe[action]['port']} is not a container port "
                            f"{sorted(map(str, declared))}"
                        )
            service = kiln_service(c)
            if service is None or "migrate" in c.get("args", []):
                continue
            grpc_port = port_named(c, "grpc")
            configured = m.env(c).get("GRPC_PORT")
            if grpc_port is None or configured is None or int(configured) != grpc_port:
                problems.append(
                    f"{w.ref} container {c['name']}: GRPC_PORT {configured} != "
                    f"grpc port {grpc_port}"
                )
            health_port = m.env(c).get("GRPC_HEALTH_PORT")
            probed = int(health_port) if health_port and int(health_port) > 0 else grpc_port
            for probe_name in ("readinessProbe", "livenessProbe"):
                probe = c.get(probe_name, {})
                if probe.get("grpc", {}).get("port") != probed:
                    problems.append(
                        f"{w.ref} container {c['name']}: {probe_name} is not a gRPC probe on "
                        f"port {probed}"
                    )
    return problems


def check_keda(m: Manifests) -> list[str]:
    """Each worker Deployment serves one queue and has one ScaledObject watching that queue's
    consumer (`bus.worker_consumer`) on `bus.JOBS_STREAM` through the NATS monitoring port."""
    problems = []
    namespaces = {d["metadata"].get("namespace") for d in m.docs}
    deployments = {d["metadata"]["name"]: d for d in m.of_kind("Deployment")}
    workers = {
        w.doc["metadata"]["name"]: w
        for w in m.workloads()
        if w.doc["kind"] == "Deployment"
        and any(kiln_service(c) == "imagegen" for c in w.containers())
    }
    scaled: dict[str, int] = {}
    served: set[str] = set()
    for so in m.of_kind("ScaledObject"):
        name = so["metadata"]["name"]
        target = so["spec"]["scaleTargetRef"]
        if target.get("kind", "Deployment") != "Deployment" or target["name"] not in deployments:
            problems.append(f"ScaledObject/{name}: target {target} is not a Deployment here")
            continue
        scaled[target["name"]] = scaled.get(target["name"], 0) + 1
        worker = workers.get(target["name"])
        if worker is None:
            problems.append(f"ScaledObject/{name}: {target['name']} is not an imagegen worker")
            continue
        container = next(c for c in worker.containers() if kiln_service(c) == "imagegen")
        queues = [q for q in (m.env(container).get("WORKER_QUEUES") or "").split(",") if q]
        if len(queues) != 1:
            problems.append(f"{worker.ref}: WORKER_QUEUES must name one queue, not {queues}")
            continue
        served.add(queues[0])
        for trigger in so["spec"]["triggers"]:
            meta = trigger["metadata"]
            expected = bus.worker_consumer(queues[0])
            if trigger["type"] != "nats-jetstream":
                problems.append(f"ScaledObject/{name}: trigger type {trigger['type']}")
            if meta.get("consumer") != expected:
                problems.append(
                    f"ScaledObject/{name}: consumer {meta.get('consumer')!r} but {worker.ref} "
                    f"serves {queues[0]!r}, whose consumer is {expected!r}"
                )
            if meta.get("stream") != bus.JOBS_STREAM:
                problems.append(
                    f"ScaledObject/{name}: stream {meta.get('stream')!r}, not {bus.JOBS_STREAM!r}"
                )
            if meta.get("account") != "$G":
                problems.append(f"ScaledObject/{name}: account {meta.get('account')!r}")
            problems += _check_monitoring_endpoint(m, name, meta, namespaces)
    for name in workers:
        if scaled.get(name) != 1:
            problems.append(f"Deployment/{name}: {scaled.get(name, 0)} ScaledObjects, not 1")
    missing = set(bus.QUEUES) - served
    if missing:
        problems.append(f"no scaled worker Deployment serves {sorted(missing)}")
    return problems


def _check_monitoring_endpoint(
    m: Manifests, name: str, meta: dict[str, str], namespaces: set[str | None]
) -> list[str]:
    endpoint = meta.get("natsServerMonitoringEndpoint", "")
    host, _, port = endpoint.partition(":")
    parts = host.split(".")
    if len(parts) < 2 or parts[2:] != ["svc", "cluster", "local"] or parts[1] not in namespaces:
        return [f"ScaledObject/{name}: endpoint {endpoint!r} is not <service>.<namespace>.svc..."]
    problem = _service_port_problem(m, parts[0], int(port or 0))
    return [f"ScaledObject/{name}: endpoint {endpoint!r}: {problem}"] if problem else []


def _service_port_problem(m: Manifests, service: str, port: int) -> str | None:
    """None when Service `service` exposes `port` and it leads to a container port."""
    matches = [s for s in m.of_kind("Service") if s["metadata"]["name"] == service]
    if not matches:
        return f"no Service {service!r}"
    ports = [p for p in matches[0]["spec"]["ports"] if p["port"] == port]
    if not ports:
        return f"Service {service!r} has no port {port}"
    target = ports[0].get("targetPort", port)
    pods = m.pods_matching({"matchLabels": matches[0]["spec"].get("selector", {})})
    if not pods or any(target not in w.port_names_and_numbers() for w in pods):
        return f"Service {service!r} port {port} does not reach a container port"
    return None


def check_references(m: Manifests) -> list[str]:
    """Every ConfigMap and Secret a pod references (envFrom, valueFrom, volumes) exists in the
    render, or is a documented pre-existing Secret, and has the keys it is asked for."""
    problems = []
    config_maps, secrets = m.config_maps(), m.secrets()
    known: dict[str, dict[str, dict[str, Any]]] = {
        "ConfigMap": config_maps,
        "Secret": secrets,
    }

    def need(where: str, kind: str, name: str, keys: list[str], optional: bool) -> None:
        if optional:
            return
        if name not in known[kind]:
            problems.append(f"{where}: {kind} {name!r} does not exist")
            return
        for key in keys:
            if key not in known[kind][name]:
                problems.append(f"{where}: {kind} {name!r} has no key {key!r}")

    for w in m.workloads():
        for c in w.containers():
            where = f"{w.ref} container {c['name']}"
            for source in c.get("envFrom", []):
                for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if field in source:
                        ref = source[field]
                        need(where, kind, ref["name"], [], ref.get("optional", False))
            for var in c.get("env", []):
                ref = var.get("valueFrom", {})
                for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    if field in ref:
                        r = ref[field]
                        need(where, kind, r["name"], [r["key"]], r.get("optional", False))
        for volume in w.pod.get("volumes", []):
            where = f"{w.ref} volume {volume['name']}"
            if "configMap" in volume:
                v = volume["configMap"]
                keys = [i["key"] for i in v.get("items", [])]
                need(where, "ConfigMap", v["name"], keys, v.get("optional", False))
            if "secret" in volume:
                v = volume["secret"]
                keys = [i["key"] for i in v.get("items", [])]
                need(where, "Secret", v["secretName"], keys, v.get("optional", False))
    return problems


def check_settings(m: Manifests) -> list[str]:
    """Every environment variable a Kiln container gets (env and the keys of envFrom sources)
    is a setting that its service reads, per scripts/config_table.py."""
    rows = config_table.rows()
    problems = []
    for w in m.workloads():
        for c in w.containers():
            service = kiln_service(c)
            if service is None:
                continue
            for variable in m.env(c):
                if variable not in rows:
                    problems.append(f"{w.ref} container {c['name']}: {variable} is no setting")
                elif service not in rows[variable][2]:
                    problems.append(
                        f"{w.ref} container {c['name']}: {variable} is not read by {service}"
                    )
    return problems


def check_services(m: Manifests) -> list[str]:
    """Every Service selects at least one pod template, and each of its ports targets a
    container port of every pod it selects."""
    problems = []
    for svc in m.of_kind("Service"):
        name = svc["metadata"]["name"]
        selector = svc["spec"].get("selector", {})
        if not selector:
            problems.append(f"Service/{name}: no selector")
            continue
        for port in svc["spec"]["ports"]:
            problem = _service_port_problem(m, name, port["port"])
            if problem:
                problems.append(f"Service/{name}: {problem} (selector {selector})")
    return problems


def check_network_policies(m: Manifests) -> list[str]:
    """Each NetworkPolicy selects pods that exist, its same-namespace peers exist, and the
    ports it opens are container ports of the pods on the receiving side."""
    problems = []
    for policy in m.of_kind("NetworkPolicy"):
        name = policy["metadata"]["name"]
        spec = policy["spec"]
        targets = m.pods_matching(spec["podSelector"])
        if not targets:
            problems.append(f"NetworkPolicy/{name}: podSelector matches no pod")
            continue
        for rule in spec.get("ingress", []):
            problems += _peer_problems(m, name, rule.get("from", []))
            for port in rule.get("ports", []):
                if not any(port["port"] in w.port_names_and_numbers() for w in targets):
                    problems.append(f"NetworkPolicy/{name}: ingress port {port['port']} unused")
        for rule in spec.get("egress", []):
            peers = rule.get("to", [])
            problems += _peer_problems(m, name, peers)
            local = [p for p in peers if "podSelector" in p and "namespaceSelector" not in p]
            for port in rule.get("ports", []):
                for peer in local:
                    pods = m.pods_matching(peer["podSelector"])
                    if pods and not any(port["port"] in w.port_names_and_numbers() for w in pods):
                        problems.append(
                            f"NetworkPolicy/{name}: egress port {port['port']} is not open on "
                            f"{peer['podSelector']}"
                        )
    return problems


def _peer_problems(m: Manifests, policy: str, peers: list[Doc]) -> list[str]:
    problems = []
    for peer in peers:
        # Peers in other namespaces (callers, KEDA, Prometheus, DNS) are outside the render.
        local = "podSelector" in peer and "namespaceSelector" not in peer
        if local and not m.pods_matching(peer["podSelector"]):
            problems.append(f"NetworkPolicy/{policy}: peer {peer['podSelector']} matches no pod")
    return problems


def check_shutdown(m: Manifests) -> list[str]:
    """Kiln pods get more time to stop than SHUTDOWN_DELAY_SECONDS + GRACE_PERIOD_SECONDS, so
    Kubernetes never kills one that is still draining."""
    problems = []
    for w in m.workloads():
        for c in w.pod["containers"]:
            if kiln_service(c) is None or "migrate" in c.get("args", []):
                continue
            env = m.env(c)
            needed = sum(
                float(env.get(v) or setting_default(v))
                for v in ("SHUTDOWN_DELAY_SECONDS", "GRACE_PERIOD_SECONDS")
            )
            allowed = w.pod.get("terminationGracePeriodSeconds", 30)
            if allowed <= needed:
                problems.append(
                    f"{w.ref}: terminationGracePeriodSeconds {allowed} <= {needed} s of drain"
                )
    return problems


def check_addresses(m: Manifests) -> list[str]:
    """AUTH_TARGET, NATS_URL and a known DATABASE_URL name Services that expose those ports."""
    problems = []
    namespaces = {d["metadata"].get("namespace") for d in m.docs}
    for w in m.workloads():
        for c in w.containers():
            if kiln_service(c) is None:
                continue
            env = m.env(c)
            addresses = []
            if env.get("AUTH_TARGET"):
                addresses.append(("AUTH_TARGET", f"grpc://{env['AUTH_TARGET']}"))
            for url in (env.get("NATS_URL") or "").split(","):
                if url:
                    addresses.append(("NATS_URL", url))
            if env.get("DATABASE_URL"):
                addresses.append(("DATABASE_URL", str(env["DATABASE_URL"])))
            for variable, url in addresses:
                parts = urlsplit(url)
                host = (parts.hostname or "").split(".")
                if len(host) > 1 and host[1] not in namespaces:
                    problems.append(f"{w.ref}: {variable} host {parts.hostname} is elsewhere")
                    continue
                problem = _service_port_problem(m, host[0], parts.port or 0)
                if problem:
                    problems.append(f"{w.ref} container {c['name']}: {variable}: {problem}")
    return problems


def check_paths(m: Manifests) -> list[str]:
    """File settings point into volumes: AUTH_KEY_DIR into a writable one, every
    AUTH_SIGNING_KEY_FILES entry into a mounted Secret that has that file as a key."""
    problems = []
    secrets = m.secrets()
    for w in m.workloads():
        volumes = {v["name"]: v for v in w.pod.get("volumes", [])}
        for c in w.containers():
            if kiln_service(c) != "auth" or "migrate" in c.get("args", []):
                continue
            env = m.env(c)
            mounts = c.get("volumeMounts", [])

            def mount_of(path: str, mounts: list[Doc] = mounts) -> Doc | None:
                for mount in mounts:
                    if PurePosixPath(path).is_relative_to(mount["mountPath"]):
                        return mount
                return None

            if env.get("AUTH_GENERATE_KEY", "true") == "true":
                key_dir = env.get("AUTH_KEY_DIR") or ".data/auth-keys"
                mount = mount_of(key_dir) if key_dir.startswith("/") else None
                if mount is None or mount.get("readOnly", False):
                    problems.append(f"{w.ref}: AUTH_KEY_DIR {key_dir} is not a writable volume")
            for path in filter(None, (env.get("AUTH_SIGNING_KEY_FILES") or "").split(",")):
                mount = mount_of(path)
                if mount is None:
                    problems.append(f"{w.ref}: signing key {path} is not in a mounted volume")
                    continue
                source = volumes.get(mount["name"], {}).get("secret")
                name = PurePosixPath(path).relative_to(mount["mountPath"]).as_posix()
                if source is None or name not in secrets.get(source["secretName"], {}):
                    problems.append(f"{w.ref}: signing key {path} is no key of a mounted Secret")
            has_key = env.get("AUTH_SIGNING_KEY_FILES") or "AUTH_SIGNING_KEYS" in env
            if env.get("AUTH_GENERATE_KEY") != "true" and not has_key:
                problems.append(f"{w.ref}: no signing key and AUTH_GENERATE_KEY is not true")
    return problems


def check_tls_files(m: Manifests) -> list[str]:
    """Every TLS file a Kiln container is given is a key of a Secret mounted at that path."""
    problems = []
    secrets = m.secrets()
    for w in m.workloads():
        volumes = {v["name"]: v for v in w.pod.get("volumes", [])}
        for c in w.containers():
            if kiln_service(c) is None:
                continue
            env = m.env(c)
            for variable in (v for v in TLS_FILE_SETTINGS if env.get(v)):
                path = PurePosixPath(str(env[variable]))
                mount = next(
                    (
                        v
                        for v in c.get("volumeMounts", [])
                        if path.parent.as_posix() == v["mountPath"]
                    ),
                    None,
                )
                source = volumes.get(mount["name"], {}).get("secret") if mount else None
                if source is None or path.name not in secrets.get(source["secretName"], {}):
                    problems.append(f"{w.ref}: {variable} {path} is no key of a mounted Secret")
    return problems


def check_nats(m: Manifests) -> list[str]:
    """The NATS config each StatefulSet mounts listens on its container ports, names each
    server after its pod, and, when there is more than one replica, routes to exactly the
    StatefulSet's pods through its headless Service."""
    problems = []
    for sts in m.of_kind("StatefulSet"):
        spec = sts["spec"]
        pod = spec["template"]["spec"]
        container = next((c for c in pod["containers"] if c["name"] == "nats"), None)
        if container is None:
            continue
        where = f"StatefulSet/{sts['metadata']['name']}"
        command = container.get("command", [])
        if "--config" not in command:
            problems.append(f"{where}: nats-server runs without --config")
            continue
        conf_path = PurePosixPath(command[command.index("--config") + 1])
        mounts = [
            v
            for v in container["volumeMounts"]
            if conf_path.parent == PurePosixPath(v["mountPath"])
        ]
        volumes = [v for v in pod["volumes"] if mounts and v["name"] == mounts[0]["name"]]
        if not volumes or "configMap" not in volumes[0]:
            problems.append(f"{where}: {conf_path} is not mounted from a ConfigMap")
            continue
        conf = m.config_maps().get(volumes[0]["configMap"]["name"], {}).get(conf_path.name, "")
        # Top-level `key: value` lines only (blocks such as `cluster { port: ... }` are indented).
        settings = dict(re.findall(r"^(\w+)\s*:\s*(\S+)", conf, flags=re.MULTILINE))
        for key, port_name in (("port", "client"), ("http_port", "monitor")):
            if int(settings.get(key, 0)) != port_named(container, port_name):
                problems.append(f"{where}: nats.conf {key} is not the `{port_name}` port")
        pod_name_env = [
            e for e in container.get("env", []) if e["name"] == "POD_NAME" and "valueFrom" in e
        ]
        if settings.get("server_name") != "$POD_NAME" or not pod_name_env:
            problems.append(f"{where}: server_name is not the pod name")
        replicas = spec.get("replicas", 1)
        routes = set(re.findall(r"nats://([\w.-]+):(\d+)", conf))
        expected = {
            (
                f"{sts['metadata']['name']}-{i}.{spec['serviceName']}",
                str(port_named(container, "cluster")),
            )
            for i in range(replicas)
        }
        if replicas > 1 and routes != expected:
            problems.append(f"{where}: {replicas} replicas but routes {sorted(routes)}")
    return problems


def check_hardening(m: Manifests) -> list[str]:
    """Every pod runs as non-root with RuntimeDefault seccomp and no service account token;
    every container drops all capabilities, cannot escalate, has a read-only root filesystem
    and requests and limits; Kiln pods run as uid 10001 and expose the metrics port."""
    problems = []
    for w in m.workloads():
        pod_security = w.pod.get("securityContext", {})
        if pod_security.get("runAsNonRoot") is not True:
            problems.append(f"{w.ref}: runAsNonRoot is not true")
        if pod_security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{w.ref}: seccompProfile is not RuntimeDefault")
        if w.pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{w.ref}: mounts a service account token")
        for c in w.containers():
            where = f"{w.ref} container {c['name']}"
            problems += [f"{where}: {p}" for p in _container_hardening(c)]
            if kiln_service(c) is not None:
                problems += [f"{where}: {p}" for p in _kiln_pod_shape(w, c)]
    return problems


def _container_hardening(c: Doc) -> list[str]:
    problems = []
    security = c.get("securityContext", {})
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if security.get("readOnlyRootFilesystem") is not True:
        problems.append("root filesystem is writable")
    if security.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append("does not drop ALL capabilities")
    resources = c.get("resources", {})
    for bound in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(resources.get(bound, {})):
            problems.append(f"{bound} lack cpu or memory")
    return problems


def _kiln_pod_shape(w: Workload, c: Doc) -> list[str]:
    problems = []
    if w.pod.get("securityContext", {}).get("runAsUser") != 10001:
        problems.append("runAsUser is not 10001")
    tmp = "/tmp"  # noqa: S108 - a mount path that must exist, not a file this test creates
    if not any(v["mountPath"] == tmp for v in c.get("volumeMounts", [])):
        problems.append("no writable /tmp")
    if "migrate" in c.get("args", []):
        return problems
    if port_named(c, "metrics") != METRICS_PORT:
        problems.append(f"no `metrics` port {METRICS_PORT}")
    scrape = (w.annotations.get("prometheus.io/scrape"), w.annotations.get("prometheus.io/port"))
    if scrape != ("true", str(METRICS_PORT)):
        problems.append("no prometheus.io scrape annotations")
    return problems


# ---------------------------------------------------------------- tests on the real renders


def check_migrations(m: Manifests) -> list[str]:
    """One migrations Job, named migrations-<the tag of the images it runs> so each release
    gets its own Job, and an Argo CD Sync hook recreated on each sync."""
    jobs = migrations_jobs(m)
    if len(jobs) != 1:
        return [f"{len(jobs)} migrations Jobs, not 1"]
    job = jobs[0]
    name = job["metadata"]["name"]
    spec = job["spec"]["template"]["spec"]
    tags = {
        c["image"].rpartition(":")[2]
        for c in [*spec.get("initContainers", []), *spec["containers"]]
    }
    problems = []
    if len(tags) != 1 or name != f"migrations-{next(iter(tags))}":
        problems.append(f"Job/{name}: the name does not carry the image tag {sorted(tags)}")
    annotations = job["metadata"].get("annotations", {})
    if annotations.get("argocd.argoproj.io/hook") != "Sync" or (
        annotations.get("argocd.argoproj.io/hook-delete-policy") != "BeforeHookCreation"
    ):
        problems.append(f"Job/{name}: not an Argo CD Sync hook recreated on each sync")
    return problems


def check_schema_wait(m: Manifests) -> list[str]:
    """auth and tasks, which wait NOT_SERVING for their schema, have a startup probe on the
    liveness service (SERVING while waiting), so Kubernetes does not restart them."""
    problems = []
    for w in m.workloads():
        for c in w.pod["containers"]:
            if kiln_service(c) not in ("auth", "tasks") or "migrate" in c.get("args", []):
                continue
            probe = c.get("startupProbe", {}).get("grpc", {})
            if probe.get("service") != "liveness":
                problems.append(f"{w.ref}: startupProbe does not probe the liveness service")
    return problems


def _pool_of(m: Manifests, container: Doc) -> int:
    env = m.env(container)
    return sum(int(env.get(v) or setting_default(v)) for v in ("DB_POOL_SIZE", "DB_MAX_OVERFLOW"))


def _most_pods(m: Manifests, deployment: Doc) -> int:
    """The most pods a Deployment runs: HPA maximum (or replicas) plus the rolling surge."""
    name = deployment["metadata"]["name"]
    hpas = [
        h
        for h in m.of_kind("HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == name
    ]
    most = hpas[0]["spec"]["maxReplicas"] if hpas else deployment["spec"].get("replicas", 1)
    surge = deployment["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", 1)
    return int(most) + int(surge)


def connections(m: Manifests) -> dict[str, int]:
    """PostgreSQL connections at the HPA maxima, by source: each Kiln Deployment with a
    direct DATABASE_URL (pods x pool size + overflow), PgBouncer (pods x default_pool_size)
    and one each for the migrations and backup Jobs."""
    used: dict[str, int] = {}
    for deployment in m.of_kind("Deployment"):
        name = deployment["metadata"]["name"]
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            database = next((v for v in c.get("env", []) if v["name"] == "DATABASE_URL"), None)
            if database is None:
                continue
            secret = database["valueFrom"]["secretKeyRef"]["name"]
            if not secret.startswith("kiln-database-pooled"):
                used[name] = _most_pods(m, deployment) * _pool_of(m, c)
        if name == "pgbouncer":
            ini = next(v for k, v in m.config_maps().items() if k.startswith("pgbouncer-config"))
            size = re.search(r"^default_pool_size = (\d+)$", ini["pgbouncer.ini"], re.MULTILINE)
            assert size is not None
            used[name] = _most_pods(m, deployment) * int(size.group(1))
    used["migrations and backup jobs"] = 2
    return used


def check_connection_budget(m: Manifests, budget: int) -> list[str]:
    """At the HPA maxima (plus rolling surge), Kiln opens at most `budget` connections."""
    used = connections(m)
    total = sum(used.values())
    return [f"{total} PostgreSQL connections > budget {budget}: {used}"] if total > budget else []


def check_database_reachable(m: Manifests) -> list[str]:
    """Every pod given DATABASE_URL may open a connection to an in-cluster PostgreSQL (dev):
    the postgres NetworkPolicy admits it."""
    policies = [p for p in m.of_kind("NetworkPolicy") if p["metadata"]["name"] == "postgres"]
    if not policies:
        return []
    peers = [
        peer for rule in policies[0]["spec"].get("ingress", []) for peer in rule.get("from", [])
    ]
    problems = []
    for w in m.workloads():
        if w.labels.get("app.kubernetes.io/name") == "postgres":
            continue
        if any("DATABASE_URL" in m.env(c) for c in w.containers()) and not any(
            "podSelector" in p and selector_matches(p["podSelector"], w.labels) for p in peers
        ):
            problems.append(f"{w.ref}: reads DATABASE_URL but NetworkPolicy/postgres refuses it")
    return problems


def check_backup_scripts(m: Manifests) -> list[str]:
    """The backup and restore CronJobs run scripts from ConfigMap kiln-backup-scripts, which
    holds exactly the files in deploy/k8s/base/scripts (the ones the tests run)."""
    problems = []
    data = next(v for k, v in m.config_maps().items() if k.startswith("kiln-backup-scripts"))
    files = {p.name: p.read_text() for p in BACKUP_SCRIPTS.glob("*.sh")}
    if data != files:
        problems.append(f"kiln-backup-scripts holds {sorted(data)}, not the files {sorted(files)}")
    for name in ("kiln-backup", "kiln-restore"):
        job = m.get("CronJob", name)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        mounted = {v["name"]: v for v in job["volumes"]}
        for c in [*job.get("initContainers", []), *job["containers"]]:
            script = PurePosixPath(
                c["command"][-1] if c["command"][-1].endswith(".sh") else c["command"][1]
            )
            mount = next(
                (v for v in c["volumeMounts"] if str(script).startswith(v["mountPath"] + "/")), None
            )
            volume = mounted.get(mount["name"]) if mount else None
            if (
                volume is None
                or not volume.get("configMap", {}).get("name", "").startswith("kiln-backup-scripts")
                or script.name not in files
            ):
                problems.append(f"CronJob/{name} container {c['name']}: {script} is no repo script")
    return problems


def check_nats_lame_duck(m: Manifests) -> list[str]:
    """NATS enters lame-duck mode before SIGTERM (preStop), and its lame_duck_duration plus
    grace period fit in terminationGracePeriodSeconds."""
    nats = m.get("StatefulSet", "nats")
    pod = nats["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "nats")
    problems = []
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    if command != ["nats-server", "--signal", "ldm=1"]:
        problems.append(f"StatefulSet/nats: preStop {command} does not signal lame-duck mode")
    conf = next(v for k, v in m.config_maps().items() if k.startswith("nats-config"))["nats.conf"]
    seconds = [
        float(match.group(1)) if match else 120.0  # nats-server's default duration
        for match in (
            re.search(rf'^{key}: "(\d+)s"', conf, re.MULTILINE)
            for key in ("lame_duck_duration", "lame_duck_grace_period")
        )
    ]
    if sum(seconds) >= pod.get("terminationGracePeriodSeconds", 30):
        problems.append(f"nats.conf: lame duck takes {sum(seconds)} s, longer than the pod may")
    return problems


def check_monitoring(m: Manifests) -> list[str]:
    """The PodMonitor (when the monitoring component is in) selects every Kiln pod, each of
    which names its metrics port `metrics` (METRICS_PORT)."""
    problems = []
    monitors = m.of_kind("PodMonitor")
    for w in m.workloads():
        for c in w.pod["containers"]:
            if kiln_service(c) is None or "migrate" in c.get("args", []):
                continue
            if port_named(c, "metrics") != METRICS_PORT:
                problems.append(f"{w.ref}: no container port `metrics` {METRICS_PORT}")
            for monitor in monitors:
                ports = {e.get("port") for e in monitor["spec"]["podMetricsEndpoints"]}
                if (
                    not selector_matches(monitor["spec"]["selector"], w.labels)
                    or "metrics" not in ports
                ):
                    problems.append(f"{w.ref}: PodMonitor/{monitor['metadata']['name']} misses it")
    return problems


def exported_metric_names() -> set[str]:
    """Every series name the Kiln processes can export (with _total, _bucket... suffixes)."""
    assert tasks.metrics and imagegen.metrics and metrics  # registered on import
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
    return names


def check_queries(m: Manifests) -> list[str]:
    """Alert rules and dashboard panels query only metrics the code exports."""
    queries: list[tuple[str, str]] = []
    for rule_set in m.of_kind("PrometheusRule"):
        for group in rule_set["spec"]["groups"]:
            queries += [(r.get("alert") or r["record"], str(r["expr"])) for r in group["rules"]]
    for name, data in m.config_maps().items():
        for key, text in data.items():
            if key.endswith(".json") and name.startswith("kiln-dashboard"):
                for panel in json.loads(text)["panels"]:
                    queries += [(panel["title"], t["expr"]) for t in panel["targets"]]
    known = exported_metric_names()
    # Label lists (`by (kiln_dev_queue)`) name labels, not metrics.
    grouping = r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    return [
        f"{where}: {metric} is not a metric Kiln exports"
        for where, expr in queries
        for metric in re.findall(r"\bkiln_[a-z_]+\b", re.sub(grouping, "", expr))
        if metric not in known
    ]


def assert_clean(problems: list[str]) -> None:
    """Fails listing every problem, one per line."""
    assert not problems, "\n" + "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_component(overlay: str) -> None:
    """Each overlay renders auth, tasks, one worker Deployment per queue, NATS, one migrations
    Job, HPAs for auth and tasks, and PodDisruptionBudgets; only dev has PostgreSQL."""
    m = load(overlay)
    present = {(d["kind"], d["metadata"]["name"]) for d in m.docs}
    expected = {
        ("Deployment", "auth"),
        ("Deployment", "tasks"),
        ("StatefulSet", "nats"),
        ("Service", "nats"),
        ("Service", "nats-headless"),
        ("HorizontalPodAutoscaler", "auth"),
        ("HorizontalPodAutoscaler", "tasks"),
        ("PodDisruptionBudget", "auth"),
        ("PodDisruptionBudget", "tasks"),
        ("PodDisruptionBudget", "nats"),
        ("NetworkPolicy", "default-deny"),
    }
    for queue in bus.QUEUES:
        expected.add(("Deployment", f"imagegen-{queue.replace('_', '-')}"))
    assert expected <= present, sorted(expected - present)
    assert len(migrations_jobs(m)) == 1
    assert (("StatefulSet", "postgres") in present) == (overlay == "dev")
    assert {d["metadata"].get("namespace") for d in m.docs} == {"kiln"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probe_ports_are_container_ports(overlay: str) -> None:
    """Every probe targets a port its container declares; Kiln services probe gRPC health on
    the port GRPC_PORT configures, or on GRPC_HEALTH_PORT when the server is TLS only."""
    assert_clean(check_probes(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_watches_the_consumers_the_code_creates(overlay: str) -> None:
    """Each worker Deployment's ScaledObject names bus.worker_consumer(its queue) on
    bus.JOBS_STREAM, via the NATS monitoring port of a Service in the namespace."""
    assert_clean(check_keda(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_maps_and_secrets_exist_with_their_keys(overlay: str) -> None:
    """No pod references a ConfigMap, Secret or key the overlay does not provide (prod's
    pre-existing Secrets are listed in PREEXISTING_SECRETS)."""
    assert_clean(check_references(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_environment_variables_are_settings(overlay: str) -> None:
    """Every variable given to a Kiln container is one its service reads (a typo would be
    silently ignored at runtime)."""
    assert_clean(check_settings(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_reach_pods(overlay: str) -> None:
    """Every Service selects pods and targets ports those pods declare."""
    assert_clean(check_services(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_match_pods_and_ports(overlay: str) -> None:
    """NetworkPolicy selectors and peers match real pods, and opened ports are real ports."""
    assert_clean(check_network_policies(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_outlive_their_graceful_shutdown(overlay: str) -> None:
    """terminationGracePeriodSeconds exceeds the shutdown delay plus the drain period."""
    assert_clean(check_shutdown(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_addresses_name_services_in_the_render(overlay: str) -> None:
    """AUTH_TARGET, NATS_URL and (in dev) DATABASE_URL point at Services with those ports."""
    assert_clean(check_addresses(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_key_paths_are_mounted(overlay: str) -> None:
    """auth finds its signing keys: a writable key dir in dev, mounted Secret files in prod."""
    assert_clean(check_paths(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tls_files_are_mounted(overlay: str) -> None:
    """Every certificate, key and CA file a Kiln container is configured with is a key of a
    Secret mounted at that path (in prod, the Secrets cert-manager writes)."""
    assert_clean(check_tls_files(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_config_matches_its_statefulset(overlay: str) -> None:
    """nats.conf uses the declared ports and, clustered, routes to every replica."""
    assert_clean(check_nats(load(overlay)))


def _secret_ref(env: list[Doc], name: str) -> tuple[str, str] | None:
    for entry in env:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if entry["name"] == name and ref:
            return str(ref["name"]), str(ref["key"])
    return None


def check_nats_credentials(m: Manifests) -> list[str]:
    """Every NATS client container connects as its own role (NATS_USER = the service, the
    password from that role's key of the credentials Secret), and the NATS servers read
    each role's password from the same Secret key (nats-auth.conf refers to it)."""
    problems = []
    server_refs: dict[str, tuple[str, str] | None] = {}
    clients: list[tuple[str, str, list[Doc]]] = []
    for workload in m.workloads():
        for container in workload.pod["containers"]:
            env = container.get("env", [])
            if container["name"] == "nats":
                for role in natsauth.ROLES:
                    server_refs[role] = _secret_ref(env, natsauth.password_variable(role))
            service = kiln_service(container)
            config_maps = [
                e["configMapRef"]["name"]
                for e in container.get("envFrom", [])
                if "configMapRef" in e
            ]
            data = m.config_maps()
            reads_bus = any("NATS_URL" in data.get(name, {}) for name in config_maps)
            if service is not None and reads_bus:
                clients.append((f"{workload.ref} container {container['name']}", service, env))
    for role in natsauth.ROLES:
        if server_refs.get(role) is None:
            problems.append(f"nats: {natsauth.password_variable(role)} is not from a Secret")
    for where, service, env in clients:
        user = next((e.get("value") for e in env if e["name"] == "NATS_USER"), None)
        if user != service:
            problems.append(f"{where}: NATS_USER is {user!r}, not {service!r}")
        ref = _secret_ref(env, "NATS_PASSWORD")
        if ref is None or ref != server_refs.get(service):
            problems.append(f"{where}: NATS_PASSWORD is not the servers' {service} password")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_bus_client_has_its_own_nats_user(overlay: str) -> None:
    """tasks and every worker Deployment connect with their own role's NATS credentials,
    the same Secret key the NATS servers check them against."""
    assert_clean(check_nats_credentials(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_server_accepts_the_rendered_config(overlay: str, tmp_path: Path) -> None:
    """The real nats-server loads the overlay's NATS config (with authorization from
    nats-auth.conf, the passwords from the environment the StatefulSet gives it, and, where
    the overlay mounts a TLS Secret, a certificate of a test CA in its place)."""
    m = load(overlay)
    [sts] = [s for s in m.of_kind("StatefulSet") if s["metadata"]["name"] == "nats"]
    [container] = sts["spec"]["template"]["spec"]["containers"]
    pod = sts["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    mounts = {mount["name"]: mount["mountPath"] for mount in container.get("volumeMounts", [])}
    secret_dirs = {}
    for secret_volume in (v for v in pod["volumes"] if "secret" in v):
        local = tmp_path / secret_volume["name"]
        issued = PrivateCa(tmp_path / f"{secret_volume['name']}-ca").server("nats")
        local.mkdir()
        shutil.copy(issued.cert, local / "tls.crt")
        shutil.copy(issued.key, local / "tls.key")
        secret_dirs[mounts[secret_volume["name"]]] = str(local)
    for key, text in m.config_maps()[volume["configMap"]["name"]].items():
        local_text = text
        for mounted, local_dir in secret_dirs.items():
            local_text = local_text.replace(mounted, local_dir)
        (tmp_path / key).write_text(local_text)
    env = {e["name"]: e.get("value", "from-the-cluster") for e in container["env"]}
    result = subprocess.run(
        [str(nats_server_binary()), "--config", str(tmp_path / "nats.conf"), "-t"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "authorization" in (tmp_path / "nats-auth.conf").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_hardened(overlay: str) -> None:
    """Every pod and container is locked down and bounded, and Kiln pods are ready to be
    scraped on the metrics port."""
    assert_clean(check_hardening(load(overlay)))


def test_prod_signs_with_mounted_keys_and_dev_generates_one() -> None:
    """prod never generates a signing key; dev does, with a single auth replica."""
    prod, dev = load("prod"), load("dev")
    prod_env = prod.env(prod.get("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0])
    assert prod_env["AUTH_GENERATE_KEY"] == "false"
    assert prod_env["AUTH_SIGNING_KEY_FILES"]
    dev_env = dev.env(dev.get("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0])
    assert dev_env["AUTH_GENERATE_KEY"] == "true"
    assert dev.get("HorizontalPodAutoscaler", "auth")["spec"]["maxReplicas"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migrations_job_is_named_after_its_release(overlay: str) -> None:
    """The migrations Job's name carries its images' tag, so applying a new release creates
    a new Job instead of failing on the old one's immutable template; Argo CD runs it as a
    Sync hook."""
    assert_clean(check_migrations(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_waiting_for_their_schema_are_not_restarted(overlay: str) -> None:
    """auth and tasks probe the liveness service at startup, which is SERVING while they
    wait NOT_SERVING for the migrations."""
    assert_clean(check_schema_wait(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_connections_fit_the_budget(overlay: str) -> None:
    """At the HPA maxima plus rolling surge, the pools (or PgBouncer's) open no more
    PostgreSQL connections than the overlay's documented budget."""
    assert_clean(check_connection_budget(load(overlay), CONNECTION_BUDGET[overlay]))


def test_prod_without_settings_would_exceed_the_budget() -> None:
    """The budget check counts what the code's default pool settings would open (24 pods x
    20 connections in prod), so it is not vacuous."""
    m = load("prod")
    for name in ("auth", "tasks"):
        for source in m.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0][
            "envFrom"
        ]:
            ref = source["configMapRef"]["name"]
            if ref.startswith(f"{name}-"):
                data = m.get("ConfigMap", ref)["data"]
                data.pop("DB_POOL_SIZE"), data.pop("DB_MAX_OVERFLOW")
    assert check_connection_budget(m, CONNECTION_BUDGET["prod"])
    assert connections(m)["auth"] == 13 * 20


def test_pgbouncer_takes_the_services_but_not_migrations_or_backups() -> None:
    """With components/pgbouncer, auth and tasks read the pooled URL; the migrations Job and
    the backup/restore jobs keep the direct one."""
    m = load("prod-all-options")
    for w in m.workloads():
        for c in w.containers():
            source = next(
                (
                    v["valueFrom"]["secretKeyRef"]["name"]
                    for v in c.get("env", [])
                    if v["name"] == "DATABASE_URL"
                ),
                None,
            )
            if source is None:
                continue
            pooled = w.labels.get("app.kubernetes.io/name") in ("auth", "tasks")
            assert source == ("kiln-database-pooled" if pooled else "kiln-database"), w.ref


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_database_client_may_reach_postgres(overlay: str) -> None:
    """In dev, the in-cluster PostgreSQL's NetworkPolicy admits every pod that is given
    DATABASE_URL, the backup and restore jobs included."""
    assert_clean(check_database_reachable(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_backup_jobs_run_the_scripts_in_the_repository(overlay: str) -> None:
    """The CronJobs run deploy/k8s/base/scripts/*.sh byte for byte (through the generated
    ConfigMap), the files tests/test_backup_scripts.py runs against PostgreSQL."""
    assert_clean(check_backup_scripts(load(overlay)))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_enters_lame_duck_mode_on_shutdown(overlay: str) -> None:
    """NATS signals lame-duck mode in preStop, with a duration that fits the grace period."""
    assert_clean(check_nats_lame_duck(load(overlay)))


@pytest.mark.parametrize(
    ("overlay", "namespace"),
    [("dev", "keda"), ("prod", "keda"), ("prod-all-options", "kube-system")],
)
def test_keda_namespace_is_configurable(overlay: str, namespace: str) -> None:
    """Only KEDA's namespace reaches the NATS monitoring port: `keda` by default, kube-system
    with components/keda-in-kube-system."""
    m = load(overlay)
    opened = [
        peer.get("namespaceSelector", {}).get("matchLabels", {})
        for policy in m.of_kind("NetworkPolicy")
        if selector_matches(policy["spec"]["podSelector"], {"app.kubernetes.io/name": "nats"})
        for rule in policy["spec"].get("ingress", [])
        if any(p["port"] == 8222 for p in rule.get("ports", []))
        for peer in rule["from"]
    ]
    assert opened == [{"kubernetes.io/metadata.name": namespace}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_kiln_pod_is_scraped(overlay: str) -> None:
    """Every Kiln pod names its metrics port `metrics`; where the monitoring component is in,
    its PodMonitor selects every one of them."""
    assert_clean(check_monitoring(load(overlay)))


def test_monitoring_component_is_optional() -> None:
    """dev and prod apply without the Prometheus Operator's CRDs; prod-all-options brings the
    PodMonitor, PrometheusRule and dashboard ConfigMap."""
    for overlay in ("dev", "prod"):
        kinds = {d["kind"] for d in load(overlay).docs}
        assert not kinds & {"PodMonitor", "PrometheusRule"}, overlay
    m = load("prod-all-options")
    assert len(m.of_kind("PodMonitor")) == 1 and len(m.of_kind("PrometheusRule")) == 1
    assert m.get("ConfigMap", "kiln-dashboard")["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_alerts_and_dashboard_query_exported_metrics() -> None:
    """Every kiln_* metric in the alert rules and the dashboard is one the code exports, and
    the alerts the operations review asked for are there."""
    m = load("prod-all-options")
    assert_clean(check_queries(m))
    alerts = {
        r["alert"] for g in m.get("PrometheusRule", "kiln")["spec"]["groups"] for r in g["rules"]
    }
    assert {
        "KilnOutboxLagHigh",
        "KilnQueueGrowingWithoutWorkers",
        "KilnJobFailureRateHigh",
        "KilnJobsHitMaxDeliveries",
        "KilnRpcErrorRateHigh",
        "KilnWebhookFailures",
        "KilnDatabasePoolSaturated",
    } <= alerts


def test_custom_resources_match_their_bundled_schemas() -> None:
    """The rendered ScaledObjects, PodMonitor, PrometheusRule, Certificates and Issuers pass
    the schemas in deploy/k8s/schemas; a misspelt field, a wrong type or a kind with no
    schema fails."""
    m = load("prod-all-options")
    found, checked = crd_validate.problems(m.docs)
    assert found == []
    assert checked == {
        "ScaledObject": 3,
        "PodMonitor": 1,
        "PrometheusRule": 1,
        "Certificate": 5,
        "Issuer": 2,
    }
    broken = copy.deepcopy(m.docs)
    for doc in broken:
        if doc["kind"] == "PrometheusRule":
            doc["spec"]["groups"][0]["rules"][0]["expression"] = "up"
        if doc["kind"] == "PodMonitor":
            doc["spec"]["podMetricsEndpoints"][0]["interval"] = 30
        if doc["kind"] == "ScaledObject":
            doc["spec"]["minReplicas"] = 1
    broken.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    found, _ = crd_validate.problems(broken)
    text = "\n".join(found)
    assert "'expression' was unexpected" in text
    assert "interval: 30 is not of type 'string'" in text
    assert "'minReplicas' was unexpected" in text
    assert "Widget/w: no schema" in text


# ---------------------------------------------------------------- the checks catch breakage


def _rename_consumer(m: Manifests) -> None:
    meta = m.get("ScaledObject", "imagegen-standard")["spec"]["triggers"][0]["metadata"]
    meta["consumer"] = "workers-standrad"


def _move_worker_to_other_queue(m: Manifests) -> None:
    container = m.get("Deployment", "imagegen-lumina")["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "WORKER_QUEUES", "value": "standard"}]


def _rename_stream(m: Manifests) -> None:
    m.get("ScaledObject", "imagegen-lumina")["spec"]["triggers"][0]["metadata"]["stream"] = "JOB"


def _move_probe(m: Manifests) -> None:
    container = m.get("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["grpc"]["port"] = 50052


def _rename_service_target(m: Manifests) -> None:
    m.get("Service", "tasks")["spec"]["ports"][0]["targetPort"] = "gprc"


def _rename_config_map_reference(m: Manifests) -> None:
    container = m.get("Deployment", "tasks")["spec"]["template"]["spec"]["containers"][0]
    for source in container["envFrom"]:
        if source["configMapRef"]["name"].startswith("kiln-bus"):
            source["configMapRef"]["name"] = "kiln-buss"


def _rename_secret_key(m: Manifests) -> None:
    container = migrations_jobs(m)[0]["spec"]["template"]["spec"]["containers"][0]
    container["env"][0]["valueFrom"]["secretKeyRef"]["key"] = "DATABASE_URI"


def _misspell_setting(m: Manifests) -> None:
    container = m.get("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0]
    container["env"].append({"name": "AUTH_ACCESS_TOKEN_TTL", "value": "60"})


def _give_auth_a_bus_setting(m: Manifests) -> None:
    container = m.get("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0]
    container["env"].append({"name": "JOB_ACK_WAIT_SECONDS", "value": "30"})


def _rename_policy_peer(m: Manifests) -> None:
    rule = m.get("NetworkPolicy", "nats")["spec"]["ingress"][0]
    rule["from"][1]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] = "image-gen"


def _shorten_grace(m: Manifests) -> None:
    m.get("Deployment", "auth")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 20


def _rename_nats_service(m: Manifests) -> None:
    m.get("Service", "nats")["metadata"]["name"] = "nats-client"


def _drop_key_dir_volume(m: Manifests) -> None:
    container = m.get("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0]
    container["volumeMounts"] = [v for v in container["volumeMounts"] if v["name"] != "auth-keys"]


def _unmount_signing_keys(m: Manifests) -> None:
    container = m.get("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0]
    for mount in container["volumeMounts"]:
        if mount["name"] == "signing-keys":
            mount["mountPath"] = "/etc/kiln/keys"


def _point_tls_key_elsewhere(m: Manifests) -> None:
    container = m.get("Deployment", "tasks")["spec"]["template"]["spec"]["containers"][0]
    for variable in container["env"]:
        if variable["name"] == "GRPC_TLS_KEY_FILE":
            variable["value"] = "/var/run/secrets/kiln/tls/tls.pem"


def _grow_nats_cluster(m: Manifests) -> None:
    m.get("StatefulSet", "nats")["spec"]["replicas"] = 5


def _make_root_writable(m: Manifests) -> None:
    container = m.get("Deployment", "tasks")["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFilesystem"] = False


def _rename_migrations_job(m: Manifests) -> None:
    migrations_jobs(m)[0]["metadata"]["name"] = "migrations"


def _probe_overall_health_at_startup(m: Manifests) -> None:
    container = m.get("Deployment", "tasks")["spec"]["template"]["spec"]["containers"][0]
    del container["startupProbe"]["grpc"]["service"]


def _refuse_backups_in_postgres_policy(m: Manifests) -> None:
    rule = m.get("NetworkPolicy", "postgres")["spec"]["ingress"][0]
    rule["from"] = [p for p in rule["from"] if "kiln-backup" not in str(p)]


def _edit_script_in_config_map(m: Manifests) -> None:
    name = next(k for k in m.config_maps() if k.startswith("kiln-backup-scripts"))
    m.get("ConfigMap", name)["data"]["backup.sh"] += "echo edited in the cluster\n"


def _drop_nats_pre_stop(m: Manifests) -> None:
    container = m.get("StatefulSet", "nats")["spec"]["template"]["spec"]["containers"][0]
    del container["lifecycle"]


def _misname_metrics_port(m: Manifests) -> None:
    container = m.get("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0]
    for port in container["ports"]:
        if port["name"] == "metrics":
            port["name"] = "prometheus"


def _query_unknown_metric(m: Manifests) -> None:
    rule = m.get("PrometheusRule", "kiln")["spec"]["groups"][0]["rules"][0]
    rule["expr"] = "max(kiln_tasks_queue_lenght) > 1"


MUTATIONS = [
    ("dev", _rename_consumer, check_keda, "workers-standrad"),
    ("prod", _move_worker_to_other_queue, check_keda, "'workers-standard'"),
    ("dev", _rename_stream, check_keda, "stream 'JOB'"),
    ("dev", _move_probe, check_probes, "readinessProbe port 50052"),
    ("prod", _rename_service_target, check_services, "Service/tasks"),
    ("dev", _rename_config_map_reference, check_references, "ConfigMap 'kiln-buss'"),
    ("prod", _rename_secret_key, check_references, "no key 'DATABASE_URI'"),
    ("dev", _misspell_setting, check_settings, "AUTH_ACCESS_TOKEN_TTL is no setting"),
    ("dev", _give_auth_a_bus_setting, check_settings, "JOB_ACK_WAIT_SECONDS is not read by auth"),
    ("prod", _rename_policy_peer, check_network_policies, "image-gen"),
    ("dev", _shorten_grace, check_shutdown, "Deployment/auth"),
    ("dev", _rename_nats_service, check_addresses, "no Service 'nats'"),
    ("dev", _drop_key_dir_volume, check_paths, "AUTH_KEY_DIR"),
    ("prod", _unmount_signing_keys, check_paths, "signing key"),
    ("prod", _point_tls_key_elsewhere, check_tls_files, "GRPC_TLS_KEY_FILE"),
    ("prod", _grow_nats_cluster, check_nats, "5 replicas but routes"),
    ("prod", _make_root_writable, check_hardening, "root filesystem is writable"),
    ("prod", _rename_migrations_job, check_migrations, "does not carry the image tag"),
    ("dev", _probe_overall_health_at_startup, check_schema_wait, "Deployment/tasks"),
    ("dev", _refuse_backups_in_postgres_policy, check_database_reachable, "CronJob/kiln-backup"),
    ("prod", _edit_script_in_config_map, check_backup_scripts, "not the files"),
    ("prod", _drop_nats_pre_stop, check_nats_lame_duck, "lame-duck"),
    ("prod-all-options", _misname_metrics_port, check_monitoring, "Deployment/auth"),
    ("prod-all-options", _query_unknown_metric, check_queries, "kiln_tasks_queue_lenght"),
]


@pytest.mark.parametrize(
    ("overlay", "mutate", "check", "expected"),
    MUTATIONS,
    ids=[f"{o}-{f.__name__.lstrip('_')}-{c.__name__}" for o, f, c, _ in MUTATIONS],
)
def test_checks_report_a_broken_copy(
    overlay: str,
    mutate: Callable[[Manifests], None],
    check: Callable[[Manifests], list[str]],
    expected: str,
) -> None:
    """A check that passes on the real render reports the problem once one name in a copy
    of that render is changed (so the tests above cannot pass vacuously)."""
    manifests = load(overlay)
    assert_clean(check(manifests))
    mutate(manifests)
    problems = check(manifests)
    assert any(expected in p for p in problems), problems


def test_renaming_the_headless_service_breaks_the_keda_endpoint() -> None:
    """KEDA reaches NATS monitoring through nats-headless; renaming it is reported."""
    m = load("prod")
    m.get("Service", "nats-headless")["metadata"]["name"] = "nats-peers"
    assert any("no Service 'nats-headless'" in p for p in check_keda(m))


# ---------------------------------------------------------------- compose and Dockerfiles


@functools.cache
def _compose() -> Doc:
    data: Doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def _compose_service_of(spec: Doc) -> str | None:
    return KILN_IMAGES.get(str(spec.get("image", "")).rsplit(":", 1)[0])


def test_compose_builds_each_kiln_image_from_its_dockerfile() -> None:
    """Every Kiln service in compose.yaml builds from the workspace root with its own
    Dockerfile, and every non-Kiln service uses a published image."""
    for name, spec in _compose()["services"].items():
        service = _compose_service_of(spec)
        if service is None:
            assert "build" not in spec and spec.get("image"), name
            continue
        build = spec["build"]
        assert (ROOT / build["context"]).resolve() == ROOT, name
        assert build["dockerfile"] == f"services/{service}/Dockerfile", name
        assert (ROOT / build["dockerfile"]).is_file(), name


def test_compose_runs_migrations_before_the_services() -> None:
    """migrate-auth and migrate-tasks run `migrate` with a DATABASE_URL, and auth and tasks
    start only after their schema's migration completed."""
    services = _compose()["services"]
    for service in ("auth", "tasks"):
        migrate = services[f"migrate-{service}"]
        assert _compose_service_of(migrate) == service
        assert migrate["command"] == ["migrate"]
        assert "DATABASE_URL" in migrate["environment"]
        condition = services[service]["depends_on"][f"migrate-{service}"]["condition"]
        assert condition == "service_completed_successfully"


def test_compose_dependencies_exist_with_valid_conditions() -> None:
    """Every depends_on names a service of the file with a condition compose knows."""
    services = _compose()["services"]
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, spec in services.items():
        for dependency, how in spec.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            assert how["condition"] in conditions, (name, dependency)
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)


def test_compose_has_one_worker_per_queue_and_jetstream() -> None:
    """One imagegen worker per bus queue (WORKER_QUEUES names exactly that queue), and NATS
    runs with JetStream and its monitoring port."""
    services = _compose()["services"]
    queues = sorted(
        spec["environment"]["WORKER_QUEUES"]
        for spec in services.values()
        if _compose_service_of(spec) == "imagegen"
    )
    assert queues == sorted(bus.QUEUES)
    nats = services["nats"]["command"]
    assert "-js" in nats
    assert nats[nats.index("-m") + 1] == "8222"


def test_compose_environment_names_are_settings() -> None:
    """Every variable compose gives a Kiln container is a setting that service reads."""
    rows = config_table.rows()
    for name, spec in _compose()["services"].items():
        service = _compose_service_of(spec)
        if service is None:
            continue
        for variable in spec.get("environment", {}):
            assert variable in rows, (name, variable)
            assert service in rows[variable][2], (name, variable)


@pytest.mark.parametrize("service", sorted(GRPC_PORTS))
def test_dockerfile_builds_a_locked_non_root_image(service: str) -> None:
    """Each Dockerfile builds in a separate stage with `uv sync --locked` for its own
    package, and its final stage runs `python -m <service>` as uid 10001 with the venv only."""
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) >= 3, "expected uv, builder and final stages"
    builder, final = stages[-2], stages[-1]
    assert f"uv sync --locked --no-dev --no-editable --package kiln-{service}" in builder
    assert "uv" not in re.sub(r"#.*", "", final).replace("/.venv", "").lower().split()
    assert "COPY --from=builder /app/.venv /app/.venv" in final
    assert "USER 10001:10001" in final
    assert f'ENTRYPOINT ["python", "-m", "{service}"]' in final
    assert f"EXPOSE {GRPC_PORTS[service]} {METRICS_PORT}" in final


@pytest.mark.parametrize("service", sorted(GRPC_PORTS))
def test_dockerfile_copies_every_workspace_manifest(service: str) -> None:
    """The dependency layer copies the pyproject.toml of every workspace member, without
    which `uv sync --locked` cannot check the lock (a new member must be added there)."""
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    for member in workspace["members"]:
        assert f"COPY {member}/pyproject.toml {member}/" in text, member


def test_dockerignore_keeps_local_state_out_of_images() -> None:
    """The build context leaves out virtualenvs, local data, caches, tests, benchmarks, git."""
    entries = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".data", ".git", "tests", "**/tests", "bench", "**/__pycache__"} <= entries
