"""The deployed flows' parameters are the UI's form: each has a description, and no internal
what-if or staging parameter reaches a deployment (the renew clock stays in the CLI)."""

from __future__ import annotations

import pytest
from prefect import Flow
from prefect.utilities.callables import parameter_schema

from acmeflow.schedules import FLOW_SPECS, load_flow


@pytest.mark.parametrize("key", sorted(FLOW_SPECS))
def test_every_deployed_parameter_is_described(key: str) -> None:
    flow: Flow = load_flow(key)  # type: ignore[type-arg]
    properties = parameter_schema(flow.fn).model_dump()["properties"]
    undescribed = [name for name, prop in properties.items() if not prop.get("description")]
    assert undescribed == [], f"{key}: parameters without a description: {undescribed}"


def test_the_renew_deployment_has_no_clock_parameter() -> None:
    properties = parameter_schema(load_flow("renew").fn).model_dump()["properties"]
    assert set(properties) == {"ca", "certificate_ids"}


def test_the_issue_form_has_named_subject_fields_and_no_staging_parameters() -> None:
    properties = parameter_schema(load_flow("issue").fn).model_dump()["properties"]
    subject = {"common_name", "organization", "organizational_unit", "locality", "state"}
    assert subject | {"country", "email"} <= set(properties)
    assert not {"csr_fields", "csr_pem", "request_id"} & set(properties)
