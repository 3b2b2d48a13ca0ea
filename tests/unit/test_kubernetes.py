"""deploy/kubernetes against the Kubernetes API's schemas (kubernetes-validate, strict: no field
the API does not know), each piece against the others, and the DaemonSet's arguments against
the monitor's own parser. tests/kernel/test_image.py runs its container spec."""

import kubernetes_validate
import pytest
import yaml

from kcmp_monitor import abi, parsers, plan
from tests.helpers import ROOT

KUBERNETES = ROOT / "deploy" / "kubernetes"
VALIDATED = ("namespace.yaml", "daemonset.yaml", "service.yaml")
# Every minor version whose schemas kubernetes-validate ships, from the oldest we claim.
VERSIONS = [f"1.{minor}.0" for minor in
            range(25, int(kubernetes_validate.latest_version().split(".")[1]) + 1)]


def _load(name):
    return yaml.safe_load((KUBERNETES / name).read_text())


def _container():
    (container,) = _load("daemonset.yaml")["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", VALIDATED)
def test_manifests_validate_against_the_api(name, version):
    assert kubernetes_validate.validate(_load(name), version, strict=True)


def test_strict_validation_refuses_a_field_the_api_does_not_know():
    daemonset = _load("daemonset.yaml")
    daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["caps"] = []
    with pytest.raises(kubernetes_validate.ValidationError, match="'caps' was unexpected"):
        kubernetes_validate.validate(daemonset, VERSIONS[-1], strict=True)


def test_kustomization_applies_every_manifest_with_the_daemonsets_image():
    kustomization = _load("kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted([*VALIDATED, "podmonitor.yaml"])
    (image,) = kustomization["images"]
    name, tag = _container()["image"].split(":")
    assert (image["name"], image["newTag"]) == (name, tag)
    from kcmp_monitor import __version__
    assert tag == __version__


def test_everything_lives_in_the_namespace_and_selects_the_daemonsets_pods():
    namespace = _load("namespace.yaml")["metadata"]["name"]
    daemonset = _load("daemonset.yaml")
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert daemonset["spec"]["selector"]["matchLabels"] == labels
    port = _container()["ports"][0]
    service, podmonitor = _load("service.yaml"), _load("podmonitor.yaml")
    for manifest in (daemonset, service, podmonitor):
        assert manifest["metadata"]["namespace"] == namespace
    assert service["spec"]["selector"] == labels
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert podmonitor["spec"]["selector"]["matchLabels"] == labels
    (endpoint,) = podmonitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"
    # The job the alerts and dashboards select.
    assert {"targetLabel": "job", "replacement": "kcmp"} in endpoint["relabelings"]


def test_the_daemonsets_arguments_are_the_monitors_and_listen_on_its_port():
    the_plan = plan.from_flags(vars(parsers.build_parser().parse_args(_container()["args"])))
    assert the_plan.trace is None and the_plan.exporter is not None  # the exporter
    assert the_plan.exporter.address.port == _container()["ports"][0]["containerPort"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert _container()[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_capabilities_are_the_units_and_ptrace_for_the_hosts_namespaces():
    """The systemd unit's bounding set, and CAP_SYS_PTRACE for --namespaces-of=host."""
    security = _container()["securityContext"]
    assert security["capabilities"]["drop"] == ["ALL"]
    added = security["capabilities"]["add"]
    assert all(hasattr(abi, f"CAP_{name}") for name in added)
    unit = (ROOT / "deploy" / "kcmp-monitor.service").read_text()
    bounding = next(line for line in unit.splitlines()
                    if line.startswith("CapabilityBoundingSet="))
    assert {f"CAP_{name}" for name in added} == {*bounding.split("=", 1)[1].split(),
                                                 "CAP_SYS_PTRACE"}
    assert "--namespaces-of=host" in _container()["args"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert all(mount["readOnly"] for mount in _container()["volumeMounts"])


def test_the_scrape_example_keeps_the_daemonsets_pods_as_the_alerts_job():
    """Checked for what it selects only: Debian's promtool is built without Kubernetes
    discovery (kubernetes_sd_configs is an unknown field to it)."""
    scrape = yaml.safe_load((KUBERNETES / "prometheus-scrape.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["job_name"] == "kcmp"
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    assert sd["namespaces"]["names"] == [_load("namespace.yaml")["metadata"]["name"]]
    keep = job["relabel_configs"][0]
    labels = _load("daemonset.yaml")["spec"]["template"]["metadata"]["labels"]
    assert keep["action"] == "keep" and keep["source_labels"] == [
        "__meta_kubernetes_pod_label_app_kubernetes_io_name",
        "__meta_kubernetes_pod_container_port_name"]
    assert keep["regex"] == f"{labels['app.kubernetes.io/name']};{_container()['ports'][0]['name']}"
