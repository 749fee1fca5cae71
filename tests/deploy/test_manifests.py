"""deploy/: every manifest validates offline against the Kubernetes schemas and yamllint."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from tests.conftest import ROOT
from tests.deploy.conftest import DEPLOY, KUSTOMIZATION, Resource, manifest_files

# The oldest release we support and the newest schemas shipped.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(
    resources: list[Resource], version: str
) -> None:
    for resource in resources:
        # strict: unknown fields (typos such as `readinesProbe`) are errors, not ignored.
        kubernetes_validate.validate(resource.doc, version, strict=True)


def test_a_typo_in_a_field_name_is_caught() -> None:
    """The schema check is not vacuous: a misspelt probe fails it."""
    path = DEPLOY / "gateway.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_yamllint_is_clean_with_the_committed_config() -> None:
    config = YamlLintConfig(file=str(ROOT / ".yamllint.yaml"))
    for path in sorted(DEPLOY.rglob("*.yaml")):  # the Components' patches and Secrets too
        problems = list(linter.run(path.read_text(), config, str(path)))
        # --strict: warnings count too.
        assert not problems, "\n".join(
            f"{path.relative_to(DEPLOY)}:{p.line}: {p.desc} ({p.rule})" for p in problems
        )


def test_the_kustomization_applies_every_manifest_but_the_secret() -> None:
    kustomization = yaml.safe_load((DEPLOY / KUSTOMIZATION).read_text())
    listed = set(kustomization["resources"])
    assert all((DEPLOY / name).exists() for name in listed)
    # The admin Secret is created out of band (deploy/README.md), so a re-apply never resets it.
    assert {p.name for p in manifest_files()} - listed == {"secret.yaml"}
