"""stagegate's scoring host.

One Python process, started by stagegate from the MLflow environment it is configured with
(`serving.command`). It pays its imports once (mlflow.pyfunc, pandas, pyarrow, uvicorn, and
the common model flavours), then forks one child per model version it is asked to load: the
zygote pattern. A child starts with every import done, loads its model once, and answers on a
Unix socket of its own. A crash, an out-of-memory kill or a hang of one model ends that child
only; the host and the other models go on.

Control channel (this process): JSON lines on stdin, events as JSON lines on the original
stdout (fd 1 is pointed at stderr, so nothing a library prints can corrupt the channel).
    -> {"op": "load", "id": N, "uri": "models:/m/1", "env": {...}}
    <- {"event": "spawned", "id": N, "pid": P}
    -> {"op": "kill", "id": N}
    <- {"event": "exit", "id": N, "pid": P, "code": C | null, "signal": S | null}
    <- {"event": "ready", ...versions...} once, first; {"event": "fatal", "error": ...} instead
       if the imports fail.
A child's socket is `<dir>/m<N>.sock`, bound and listening before the fork, so stagegate can
connect as soon as it reads `spawned`; its output goes to `<dir>/m<N>.log`.

Model channel (a child's socket): frames of a 12-byte head (header length u32, body length
u64, little-endian), a JSON header, and a body. The child speaks first: {"ok": true, ...} once
its model is loaded, or {"ok": false, "error": ...} (then it exits). Then requests, one at a
time:
    {"op": "predict"}   body: an Arrow IPC stream of the rows
        -> {"status": 200, "format": "arrow"|"json", "shape": "list"|"records"}, predictions
        -> {"status": 4xx/5xx, "format": "json"}, MLflow's error JSON
    {"op": "invoke"}    body: a JSON request as `POST /invocations` takes it
        -> {"status": S, "format": "json"}, the scoring server's answer, byte for byte
    {"op": "http"}      -> {"port": P}: MLflow's scoring server app, on 127.0.0.1:P
Both scoring paths end in the same calls as MLflow's scoring server (`invocations`, and for
Arrow: the schema's casts, `predict`, the same error wrapping), so answers are the same.
"""

import gc
import io
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback

HEAD = struct.Struct("<IQ")
# Flavours worth importing before any fork: each child then starts with them loaded. Missing
# ones are skipped (the environment decides what it serves).
PRELOAD = ["skops.io", "sklearn", "mlflow.sklearn", "sklearn.linear_model", "sklearn.ensemble",
           "sklearn.pipeline", "sklearn.compose", "sklearn.preprocessing", "sklearn.impute"]


# ---------------------------------------------------------------------------- the zygote

def main():
    workdir = sys.argv[1]
    ctl = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(event):
        ctl.write(json.dumps(event) + "\n")

    # The imports build hundreds of thousands of long-lived objects: collecting while they
    # pile up only rescans them (about a tenth of the import time).
    gc.disable()
    started = time.monotonic()
    try:
        import numpy  # noqa: F401
        import pandas
        import pyarrow
        import pyarrow.ipc  # noqa: F401
        import mlflow
        import mlflow.pyfunc  # noqa: F401
        from mlflow.pyfunc import scoring_server  # noqa: F401
        from mlflow.utils import proto_json_utils  # noqa: F401
        import uvicorn
        import fastapi  # noqa: F401
    except BaseException:
        emit({"event": "fatal", "error": traceback.format_exc()[-4000:]})
        return 2
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:
            pass
    try:
        # Loading a model checks its requirements against what is installed, and the first
        # check maps every installed package to its modules (seconds): map them once, here.
        from mlflow.utils import requirements_utils
        requirements_utils._init_modules_to_packages_map()
    except Exception:
        pass
    # What the imports built lives as long as the host: out of the collector's sight, so that
    # no collection in a forked child walks it (each walk would write to every page of it,
    # copying the zygote's memory into the child and costing milliseconds per request).
    gc.freeze()
    gc.enable()
    emit({
        "event": "ready",
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "mlflow": mlflow.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "uvicorn": uvicorn.__version__,
        "import_ms": int((time.monotonic() - started) * 1000),
    })

    children = {}  # pid -> id
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    # stagegate ends the host by closing stdin (or by killing the process group).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def reap():
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            ident = children.pop(pid, None)
            emit({
                "event": "exit", "id": ident, "pid": pid,
                "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            })

    import select
    pending = b""
    while True:
        ready, _, _ = select.select([0, wake_r], [], [], 1.0)
        if wake_r in ready:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
        reap()
        if 0 not in ready:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                req = json.loads(line)
            except ValueError:
                emit({"event": "error", "error": f"not JSON: {line[:200]!r}"})
                continue
            if req.get("op") == "load":
                pid = spawn(workdir, req, ctl, wake_r, wake_w)
                if pid:
                    children[pid] = req["id"]
                    emit({"event": "spawned", "id": req["id"], "pid": pid})
                else:
                    emit({"event": "exit", "id": req["id"], "pid": None, "code": None,
                          "signal": None})
            elif req.get("op") == "kill":
                for pid, ident in list(children.items()):
                    if ident == req.get("id"):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return 0


def spawn(workdir, req, ctl, wake_r, wake_w):
    """Fork the child that will hold one model; returns its pid (0 if the fork failed)."""
    ident = req["id"]
    path = os.path.join(workdir, f"m{ident}.sock")
    log_path = os.path.join(workdir, f"m{ident}.log")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    gc.freeze()
    try:
        pid = os.fork()
    except OSError:
        traceback.print_exc()
        listener.close()
        os.close(log)
        return 0
    if pid:
        listener.close()
        os.close(log)
        return pid
    # The child: nothing of the zygote's channels or signal plumbing.
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        ctl.close()
        for fd in (wake_r, wake_w):
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.environ.update({k: str(v) for k, v in (req.get("env") or {}).items()})
        model_main(listener, req["uri"])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(70)


# ---------------------------------------------------------------------------- a model's child

def model_main(listener, uri):
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT
    from mlflow.pyfunc import scoring_server

    started = time.monotonic()
    try:
        # What the scoring server's app module does, to the letter.
        model = scoring_server.load_model_with_mlflow_config(uri)
        hello = {"ok": True, "load_ms": int((time.monotonic() - started) * 1000)}
    except BaseException as e:
        traceback.print_exc()
        hello = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000],
                 "trace": traceback.format_exc()[-4000:]}
        model = None
    if model is not None:
        schema = model.metadata.get_input_schema()
        hello["columnar"] = columnar(model, schema)
        # The scoring server marks its process as serving once the model is loaded.
        os.environ[_MLFLOW_IS_IN_SERVING_ENVIRONMENT.name] = "true"
    print(f"stagegate host: {uri}: {'loaded' if model else 'failed'}", flush=True)
    http = {}
    while True:
        conn, _ = listener.accept()
        try:
            send(conn, hello)
            if model is None:
                conn.close()
                os._exit(3)
            serve(conn, model, schema, http)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            conn.close()


def columnar(model, schema):
    """Whether rows can go as a table: a column schema (or none), not tensors, not a
    signature made from type hints (the scoring server passes those through unparsed)."""
    meta = model.metadata
    if hasattr(meta, "_is_signature_from_type_hint") and meta._is_signature_from_type_hint():
        return False
    return schema is None or not schema.is_tensor_spec()


def serve(conn, model, schema, http):
    while True:
        frame = recv(conn)
        if frame is None:
            return
        header, body = frame
        op = header.get("op")
        started = time.monotonic()
        try:
            if op == "predict":
                reply = predict_arrow(model, schema, body)
            elif op == "invoke":
                reply = invoke_json(model, schema, body)
            elif op == "http":
                reply = ({"port": start_http(model, http)}, b"")
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as e:
            # A fault of the host itself, not of the model: say so, keep serving.
            traceback.print_exc()
            reply = ({"status": 500, "format": "json", "host_error": True},
                     json.dumps({"message": f"stagegate host: {type(e).__name__}: {e}"}).encode())
        # The time this process spent on the request (decoding, predicting, encoding): the
        # host's share of the scoring time, for the report's figures.
        reply[0]["python_us"] = int((time.monotonic() - started) * 1e6)
        send(conn, *reply)


def invoke_json(model, schema, body):
    """`POST /invocations` with a JSON body, minus HTTP: the scoring server's own function."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    try:
        r = scoring_server.invocations(body, "application/json", model, schema)
        return {"status": r.status, "format": "json"}, r.response.encode()
    except MlflowException as e:
        return {"status": e.get_http_status_code(), "format": "json"}, e.serialize_as_json().encode()
    except Exception:
        traceback.print_exc()
        return {"status": 500, "format": "json"}, b"Internal Server Error"


def predict_arrow(model, schema, body):
    """Rows from an Arrow IPC stream, scored as the scoring server scores a parsed request:
    the schema's casts, `predict`, and the same wrapping of errors."""
    import pyarrow as pa
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST
    from mlflow.utils.proto_json_utils import cast_df_types_according_to_schema

    try:
        try:
            data = pa.ipc.open_stream(pa.py_buffer(body)).read_all().to_pandas()
        except Exception as e:
            raise MlflowException(message=f"stagegate sent rows that are not Arrow IPC: {e}",
                                  error_code=BAD_REQUEST)
        if schema is not None:
            data = cast_df_types_according_to_schema(data, schema)
        try:
            raw = model.predict(data)
        except MlflowException as e:
            e.message = f"Failed to predict data '{data}'. \nError: {e.message}"
            raise
        except Exception:
            raise MlflowException(
                message=(
                    "Encountered an unexpected error while evaluating the model. Verify"
                    " that the serialized input Dataframe is compatible with the model for"
                    " inference."
                ),
                error_code=BAD_REQUEST,
                stack_trace=traceback.format_exc(),
            )
    except MlflowException as e:
        return {"status": e.get_http_status_code(), "format": "json"}, e.serialize_as_json().encode()
    return encode(raw)


def encode(raw):
    """Predictions as an Arrow table when they are plain columns of numbers, booleans or
    strings (`list`: one value or vector per row; `records`: a frame, one record per row);
    anything else as the scoring server's own JSON."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from mlflow.pyfunc import scoring_server

    try:
        if isinstance(raw, pd.DataFrame):
            table, shape = pa.Table.from_pandas(raw, preserve_index=False), "records"
        else:
            arr = raw.to_numpy() if isinstance(raw, pd.Series) else raw
            table, shape = pa.table({"predictions": column(np, pa, arr)}), "list"
        if all(plain(pa, f.type) for f in table.schema):
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, table.schema) as w:
                w.write_table(table)
            return {"status": 200, "format": "arrow", "shape": shape}, sink.getvalue()
    except Exception:
        pass
    out = io.StringIO()
    scoring_server.predictions_to_json(raw, out)
    return {"status": 200, "format": "json"}, out.getvalue().encode()


def column(np, pa, arr):
    if not isinstance(arr, np.ndarray):
        raise TypeError("not an array")
    if arr.ndim == 1:
        return pa.array(arr, type=pa.string() if arr.dtype.kind in "OU" else None)
    if arr.ndim == 2 and arr.dtype.kind in "biuf":
        return pa.FixedSizeListArray.from_arrays(pa.array(arr.ravel()), arr.shape[1])
    raise TypeError("not a plain array")


def plain(pa, t):
    t = t.value_type if pa.types.is_fixed_size_list(t) else t
    return (pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_string(t)
            or pa.types.is_large_string(t) or pa.types.is_float32(t) or pa.types.is_float64(t))


def start_http(model, http):
    """MLflow's scoring server app for this model, on a free loopback port, in a thread of
    this child (started once). uvicorn runs with the settings `mlflow models serve` gives it."""
    if "port" in http:
        return http["port"]
    import uvicorn
    from mlflow.pyfunc import scoring_server

    # uvicorn binds the socket as it does for `mlflow models serve` (a TCP socket, which
    # asyncio then gives TCP_NODELAY: without it, Nagle's algorithm adds tens of ms).
    config = uvicorn.Config(scoring_server.init(model), host="127.0.0.1", port=0)
    sock = config.bind_socket()
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    if not server.started:
        raise RuntimeError("MLflow's scoring server did not start")
    http["port"] = sock.getsockname()[1]
    http["server"] = server
    return http["port"]


# ---------------------------------------------------------------------------- framing

def recv(conn):
    head = recv_exact(conn, HEAD.size)
    if head is None:
        return None
    hlen, blen = HEAD.unpack(head)
    header = json.loads(recv_exact(conn, hlen) or b"{}")
    body = recv_exact(conn, blen) if blen else b""
    return header, body


def recv_exact(conn, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = conn.recv_into(view[got:], n - got)
        if k == 0:
            return None
        got += k
    return bytes(buf)


def send(conn, header, body=b""):
    h = json.dumps(header).encode()
    conn.sendall(HEAD.pack(len(h), len(body)) + h)
    if body:
        conn.sendall(body)


if __name__ == "__main__":
    sys.exit(main())
