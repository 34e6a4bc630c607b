"""What the gates judge: one registered model version and what it is made of, read from the
MLflow server named by MLFLOW_TRACKING_URI.

The version is MODEL_NAME / MODEL_VERSION, as a stagegate `command` gate sets them. Without
MODEL_VERSION it is the newest version in Staging, which is what a CI job that has just
registered a model means.
"""
import os

import mlflow
import pytest
from mlflow.models import Model
from mlflow.tracking import MlflowClient


@pytest.fixture(scope="session")
def client():
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        pytest.fail("MLFLOW_TRACKING_URI is not set: which MLflow server holds the model?")
    return MlflowClient()


@pytest.fixture(scope="session")
def version(client):
    name = os.environ.get("MODEL_NAME")
    if not name:
        pytest.fail("MODEL_NAME is not set: which registered model should be judged?")
    number = os.environ.get("MODEL_VERSION")
    if not number:
        staging = [v for v in client.search_model_versions(f"name='{name}'") if v.current_stage == "Staging"]
        if not staging:
            pytest.fail(f"{name} has no version in Staging")
        number = max(staging, key=lambda v: int(v.version)).version
    return client.get_model_version(name, number)


@pytest.fixture(scope="session")
def run(client, version):
    if not version.run_id:
        pytest.fail(f"version {version.version} names no training run")
    return client.get_run(version.run_id)


@pytest.fixture(scope="session")
def model_dir(version, tmp_path_factory):
    """The version's model files, through the registry: `models:/NAME/VERSION` finds them
    wherever they are, a run's artifacts (MLflow 2, `runs:/` sources) or a logged model
    (MLflow 3, `models:/m-…` sources). Looking among the run's artifacts would miss the latter."""
    return mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{version.name}/{version.version}",
        dst_path=str(tmp_path_factory.mktemp("model")),
    )


@pytest.fixture(scope="session")
def model(model_dir):
    return mlflow.pyfunc.load_model(model_dir)


@pytest.fixture(scope="session")
def rows(model_dir):
    """The input example logged with the model: real rows in the shape the model takes."""
    example = Model.load(model_dir).load_input_example(model_dir)
    if example is None:
        pytest.fail("the model was logged without an input example (log_model(input_example=…))")
    return example
