"""schemathesis hooks of bench/api.sh (loaded through SCHEMATHESIS_HOOKS).

Made-up model names almost never exist, so most evaluation requests and history queries
would only test the 404 and the empty list. Some valid generated names are therefore swapped
for the registered ones (STAGEGATE_API_MODELS), and some valid versions for ones that exist.

The webhook receiver verifies an HMAC signature before it reads a byte of the payload, so
unsigned requests only ever test the 401 path. Requests generated as valid (positive mode)
are therefore signed the way MLflow signs a delivery, over the exact bytes sent, with a
current timestamp: the payload parser, the de-duplication and the routing get fuzzed too.
Requests generated as invalid (negative mode) are sent as generated, unsigned: those must be
refused with a documented 4xx.
"""
import base64
import hashlib
import hmac
import os
import time

import requests
import schemathesis
from hypothesis import strategies as st

SECRET = os.environ["STAGEGATE_API_WEBHOOK_SECRET"].encode()
WEBHOOK = "/webhooks/mlflow"
SIGNED = ("X-MLflow-Delivery-Id", "X-MLflow-Timestamp", "X-MLflow-Signature")
MODELS = os.environ["STAGEGATE_API_MODELS"].split(",")
VERSIONS = ["1", "2"]


def is_op(context, method, path):
    op = context.operation
    return op is not None and op.method.upper() == method and op.path == path


def valid_model(v):
    return isinstance(v, str) and v != "" and "/" not in v and ":" not in v


def valid_version(v):
    return isinstance(v, str) and v.isascii() and v.isdigit()


@schemathesis.hook
def flatmap_body(context, body):
    # Only a field whose generated value is valid is swapped: a body generated as invalid
    # (negative mode) must stay invalid, and schemathesis does not re-judge it after a hook.
    if not is_op(context, "POST", "/v1/evaluations") or not isinstance(body, dict):
        return st.just(body)
    if not valid_model(body.get("model")):
        return st.just(body)
    real = st.sampled_from(MODELS).map(lambda m: {**body, "model": m})
    if valid_version(body.get("version")):
        real = real | st.sampled_from(MODELS).flatmap(
            lambda m: st.sampled_from(VERSIONS).map(lambda v: {**body, "model": m, "version": v})
        )
    return st.just(body) | real


@schemathesis.hook
def flatmap_query(context, query):
    if not is_op(context, "GET", "/v1/evaluations") or not isinstance(query, dict):
        return st.just(query)
    if not isinstance(query.get("model"), str):
        return st.just(query)
    return st.just(query) | st.sampled_from(MODELS).map(lambda m: {**query, "model": m})


class MlflowSignature(requests.auth.AuthBase):
    """Signs the prepared request, so the signature covers the body bytes on the wire."""

    def __call__(self, r):
        if not all(h in r.headers for h in SIGNED):
            return r  # a request missing a signed header stays as generated
        ts = str(int(time.time()))
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        delivery = r.headers["X-MLflow-Delivery-Id"]
        if isinstance(delivery, bytes):
            delivery = delivery.decode("latin-1")
        msg = f"{delivery}.{ts}.".encode("latin-1", "replace") + body
        digest = hmac.new(SECRET, msg, hashlib.sha256).digest()
        r.headers["X-MLflow-Timestamp"] = ts
        r.headers["X-MLflow-Signature"] = "v1," + base64.b64encode(digest).decode()
        return r


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path != WEBHOOK:
        return
    meta = case.meta
    if meta is None or meta.generation.mode.is_positive:
        kwargs["auth"] = MlflowSignature()
