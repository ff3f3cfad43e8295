"""MLflow's failures named by their real cause (issue 22, item 3): promote used to report any
error, a refused password included, as "has no version".  The exceptions are MLflow's own,
as its REST client raises them for each HTTP answer."""

from __future__ import annotations

import pytest
import requests
from mlflow.exceptions import MlflowException, RestException
from mlflow.protos.databricks_pb2 import (
    PERMISSION_DENIED,
    RESOURCE_DOES_NOT_EXIST,
    UNAUTHENTICATED,
    ErrorCode,
)

from retrain.pipeline.tracking import failure


@pytest.mark.parametrize("code", [UNAUTHENTICATED, PERMISSION_DENIED])
def test_refused_credentials_are_named(code):
    exc = MlflowException(
        "API request to endpoint /api/2.0/mlflow/model-versions/get failed with error code "
        "401 != 200. Response body: 'You are not authenticated.'",
        error_code=code,
    )
    why = failure(exc, "churn", "3")
    assert why.startswith("refused the credentials") and "MLFLOW_TRACKING_USERNAME" in why
    assert "has no version" not in why


def test_a_missing_version_is_still_a_missing_version():
    exc = RestException(
        {"error_code": ErrorCode.Name(RESOURCE_DOES_NOT_EXIST), "message": "not found"}
    )
    assert failure(exc, "churn", "3") == "has no version 3 of 'churn'"


def test_a_network_failure_is_named_as_one():
    exc = MlflowException(
        "API request to http://mlflow:5000/api/2.0/mlflow/model-versions/get failed with "
        "exception HTTPConnectionPool(host='mlflow', port=5000): Max retries exceeded"
    )
    assert failure(exc, "churn", "3").startswith("could not be reached")
    assert failure(requests.ConnectionError("refused"), "churn", "3").startswith(
        "could not be reached"
    )


def test_anything_else_keeps_its_own_words():
    why = failure(ValueError("odd answer"), "churn", "3")
    assert why == "failed (ValueError: odd answer)"
