"""The one S3 client a run shares: botocore's model files read faster, same behaviour."""

from __future__ import annotations

import botocore.exceptions
import botocore.loaders
import pytest

from job.core.config import S3Settings
from job.download.s3client import _session, make_client


@pytest.mark.parametrize(("service", "kind"), [("s3", "service-2"), ("s3", "endpoint-rule-set-1")])
def test_models_load_exactly_as_botocore_loads_them(service: str, kind: str) -> None:
    ours = _session()._session.get_component("data_loader")
    assert ours.load_service_model(service, kind) == botocore.loaders.Loader().load_service_model(
        service, kind
    )


def test_the_session_knows_only_s3() -> None:
    # The price of not listing ~400 service folders at every start (see _S3ModelLoader).
    with pytest.raises(botocore.exceptions.UnknownServiceError):
        _session().client("sqs", region_name="us-east-1")


def test_the_client_talks_to_the_loopback_server_with_botocore_retries_off(
    s3_server, bucket: str, s3
) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="k", Body=b"payload")
    client = make_client(S3Settings(endpoint_url=s3_server.endpoint_url), pool_size=4)
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"payload"
    assert (
        client.meta.config.retries["total_max_attempts"] == 1
    )  # job.download.retrying owns retries
    assert client.meta.config.max_pool_connections >= 4
