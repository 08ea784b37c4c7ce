"""The device side of split computing: run the head, send what it does not decide.

Hand-offs travel as KServe v2 REST requests with the binary tensor data
extension (`eedge.split.encoding`): a compact JSON header and the raw
little-endian tensor bytes, int8 hand-offs with their scale and zero point.
Outputs are requested binary too; plain v2 JSON answers are read as well.

Works against ``eedge serve`` (which returns decisions) and against Triton or
any KServe v2 server hosting the tail as one ONNX model (which returns the
tail's exit logits; the client then applies the exits' thresholds itself).
The server's metadata says which it is (an eedge tail lists the outputs
``predictions`` and ``exit_index``), so calling code does not change.
``binary=False`` sends plain v2 JSON tensors, for servers without the binary
extension.

One HTTP/1.1 connection is kept alive per client (``close()`` or ``with``
releases it). Every request's bytes on the wire (request line, headers, body)
are counted, so ``SplitResult`` and `wire_report` can set them against what
`eedge split plan` assumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import InputDataError, TargetError
from eedge.ir.bundle import Bundle, load_bundle
from eedge.policies.criteria import score_from_probabilities, softmax
from eedge.runtime.cascade import Cascade
from eedge.split.encoding import (EEDGE_OUTPUTS, HEADER_LENGTH, TensorSpec, WireTensor,
                                  decode_response, encode_request, handoff_datatype,
                                  infer_path, request_headers)
from eedge.split.planner import WireCost, specs_wire_cost

# httpx's defaults the hand-off does not need (each costs bytes on a slow uplink)
_DROPPED_HEADERS = ("accept", "accept-encoding", "connection", "user-agent")


@dataclass
class SplitResult:
    predictions: np.ndarray
    exit_index: np.ndarray
    sent_rows: int                 # samples handed off to the tail
    sent_bytes: int                # bytes written to the socket (request lines, headers, bodies)
    received_bytes: int = 0        # bytes of the answers (status lines, headers, bodies)
    request_rows: list[int] = field(default_factory=list)  # rows of each request sent

    @property
    def bytes_per_sent_row(self) -> float:
        return self.sent_bytes / self.sent_rows if self.sent_rows else 0.0


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx comes with eedge[split] and eedge[serve]
        raise TargetError("the split client needs httpx: pip install 'eedge[split]' (or "
                          "httpx alone)") from None
    return httpx


def request_wire_bytes(request: Any) -> int:
    """Bytes an HTTP/1.1 client writes for an httpx request: line, headers, body."""
    line = len(request.method) + 1 + len(request.url.raw_path) + len(" HTTP/1.1\r\n")
    headers = sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
    return line + headers + 2 + len(request.content)


def response_wire_bytes(response: Any) -> int:
    """Bytes of an HTTP/1.1 answer: status line, headers, body (as received)."""
    line = len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n")
    headers = sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
    return line + headers + 2 + len(response.content)


class Client:
    """Runs a head bundle and sends its hand-offs to a tail server.

    ``rows_per_request`` caps the rows of one request (None: everything
    ``infer`` gets that the head does not decide goes in one request), to keep
    requests under the server's size limit or to model a device that sends
    every sample on its own (1). ``tail_policies`` (the tail exits' policies)
    are needed for generic servers that return logits.
    """

    def __init__(self, head: Bundle | str | Path, url: str, model: str,
                 runtime: str | None = None, timeout_s: float = 30.0,
                 tail_policies: list[dict[str, Any]] | None = None, binary: bool = True,
                 rows_per_request: int | None = None) -> None:
        self.head = head if isinstance(head, Bundle) else load_bundle(head)
        if (self.head.manifest.get("split") or {}).get("role") != "head":
            raise TargetError("the client needs a head bundle (`eedge split export`)")
        if rows_per_request is not None and (isinstance(rows_per_request, bool) or not
                                             isinstance(rows_per_request, int) or
                                             rows_per_request < 1):
            raise InputDataError(f"rows_per_request must be a positive integer or None, got "
                                 f"{rows_per_request!r}")
        self.cascade = Cascade(self.head, runtime=runtime)
        self.url, self.model, self.timeout_s = url.rstrip("/"), model, timeout_s
        self.binary, self.rows_per_request = binary, rows_per_request
        self.attempts = 0  # of the last request: 2 when a closed connection made it retry
        httpx = _import_httpx()
        self._httpx = httpx
        try:
            self._http = httpx.Client(base_url=self.url, timeout=timeout_s,
                                      transport=httpx.HTTPTransport(retries=1))
        except (ValueError, TypeError, httpx.InvalidURL) as exc:
            raise TargetError(f"bad tail server URL {url!r} ({exc}); give e.g. "
                              "http://host:8000") from None
        for name in _DROPPED_HEADERS:
            self._http.headers.pop(name, None)
        if self._http.base_url.scheme not in ("http", "https") or not self._http.base_url.host:
            self._http.close()
            raise TargetError(f"bad tail server URL {url!r}: give e.g. http://host:8000")
        self.host = self._http.base_url.netloc.decode("ascii")
        try:
            self.metadata = self._metadata()
            self.platform = self.metadata.get("platform", "")
            served = [o["name"] for o in _listed(self.metadata, "outputs")
                      if isinstance(o.get("name"), str)]
            # `eedge serve` says platform "eedge"; KServe reports "" unless a server
            # overrides it, so an eedge tail is also recognized by its decision outputs
            self.decides = self.platform == "eedge" or set(EEDGE_OUTPUTS) <= set(served)
            self.tail_policies = tail_policies
            if not self.decides and tail_policies is None:
                raise TargetError("a generic KServe/Triton tail returns logits: pass the tail's "
                                  "exit policies (tail_policies=[e['policy'] for e in "
                                  "tail.exits])")
            self.outputs = list(EEDGE_OUTPUTS) if self.decides else served
            if not self.outputs:
                raise TargetError(f"the tail server's metadata for {model!r} lists no outputs")
            self.specs = self._specs()
        except BaseException:
            self.close()
            raise

    # -- connection --------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _send(self, request: Any) -> Any:
        self.attempts = 1
        try:
            try:
                response = self._http.send(request)
            except (self._httpx.RemoteProtocolError, self._httpx.WriteError,
                    self._httpx.ReadError):
                # a kept-alive connection the server closed between requests (idle
                # timeout; a reset if the request crossed the close): once more on a new
                # one (inference is idempotent); timeouts are not retried
                self.attempts = 2
                response = self._http.send(request)
        except self._httpx.HTTPError as exc:
            raise TargetError(f"cannot reach the tail server at {self.url}: "
                              f"{type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise TargetError(f"the tail server answered {response.status_code}: "
                              f"{_error_text(response.content)}")
        return response

    def _metadata(self) -> dict[str, Any]:
        response = self._send(self._http.build_request("GET", f"/v2/models/{self.model}"))
        try:
            metadata = json.loads(response.content)
        except ValueError:
            raise TargetError(f"the tail server's metadata for {self.model!r} is not JSON") \
                from None
        if not isinstance(metadata, dict):
            raise TargetError(f"the tail server's metadata for {self.model!r} is not an object")
        return metadata

    # -- hand-off tensors --------------------------------------------------------------

    def _specs(self) -> list[TensorSpec]:
        """Per cut tensor: name, row shape, wire datatype and quantization, checked
        against what the server's metadata says it takes (when it says)."""
        entries = {t["name"]: t for io in self.cascade.io for t in
                   [*io["inputs"], *io["outputs"]]}
        specs = []
        for name in self.cascade.cut_tensors:
            entry = entries[name]
            datatype = handoff_datatype(np.dtype(entry["dtype"]))
            quant = entry.get("quant") if datatype == "INT8" else None
            if datatype == "INT8" and not quant:
                raise InputDataError(f"int8 hand-off {name!r} has no quantization in the head's "
                                     "manifest; export the split with --int8")
            specs.append(TensorSpec(name, tuple(int(d) for d in entry["shape"][1:]), datatype,
                                    quant["scale"][0] if quant else None,
                                    quant["zero_point"][0] if quant else None))
        served = {i.get("name"): i for i in _listed(self.metadata, "inputs")}
        if served:
            missing = [s.name for s in specs if s.name not in served]
            if missing:
                raise TargetError(f"the tail {self.model!r} takes {sorted(served)}, not the "
                                  f"head's hand-off {missing}: serve the tail exported with "
                                  "this head")
            for s in specs:
                want = served[s.name].get("datatype")
                if want is not None and want != s.datatype:
                    raise TargetError(
                        f"the tail {self.model!r} takes {s.name!r} as {want}; this head hands "
                        f"it off as {s.datatype} (runtime {self.cascade.runtime}): run the head "
                        "and the tail with runtimes of the same kind (both int8 or both float)")
        return specs

    def planned(self, rows: int = 1) -> WireCost:
        """What `eedge split plan` counts for a request of ``rows`` hand-offs to this server."""
        return specs_wire_cost(self.specs, rows, self.model, self.host, self.outputs)

    # -- inference ---------------------------------------------------------------------

    def infer(self, x: np.ndarray) -> SplitResult:
        local = self.cascade.infer(x)
        predictions, exits = local.predictions.copy(), local.exit_index.copy()
        result = SplitResult(predictions, exits, int(local.pending.size), 0)
        if not local.pending.size:
            return result
        step = self.rows_per_request or int(local.pending.size)
        for start in range(0, int(local.pending.size), step):
            rows = slice(start, start + step)
            tensors = [WireTensor(s.name, local.handoff[s.name][rows], s.scale, s.zero_point)
                       for s in self.specs]
            remote_pred, remote_exit = self.send_handoffs(tensors, result)
            predictions[local.pending[rows]] = remote_pred
            exits[local.pending[rows]] = remote_exit
        return result

    def send_handoffs(self, tensors: list[WireTensor],
                      result: SplitResult) -> tuple[np.ndarray, np.ndarray]:
        """Send hand-off rows the head already computed (e.g. read from a device by
        `eedge.split.bridge`) in one request; returns (predictions, exit index) per row in
        the model's exit numbering and counts the bytes in ``result``."""
        n = int(tensors[0].array.shape[0])
        body, json_length = encode_request(tensors, self.outputs, self.binary)
        request = self._http.build_request("POST", infer_path(self.model), content=body,
                                           headers=request_headers(json_length))
        result.request_rows.append(n)
        try:
            response = self._send(request)
        finally:  # a request sent again on a new connection is counted again
            result.sent_bytes += request_wire_bytes(request) * self.attempts
        result.received_bytes += response_wire_bytes(response)
        length = response.headers.get(HEADER_LENGTH)
        try:
            header_length = None if length is None else int(length)
        except ValueError:
            raise TargetError(f"the tail server's answer is malformed: {HEADER_LENGTH} is "
                              f"{length!r}") from None
        outputs = decode_response(response.content, header_length)
        if self.decides:
            return self._check_decisions(outputs, n)
        return self._decide(outputs, n)

    def _check_decisions(self, outputs: dict[str, np.ndarray],
                         n: int) -> tuple[np.ndarray, np.ndarray]:
        for name in EEDGE_OUTPUTS:
            if name not in outputs or outputs[name].shape != (n,) or \
                    outputs[name].dtype.kind not in "iu":
                raise TargetError(f"the tail server's answer is malformed: {name!r} must be "
                                  f"{n} integers (got "
                                  f"{getattr(outputs.get(name), 'shape', 'nothing')})")
        exits, classes = len(self.head.exits), self.cascade.exits[-1]["num_classes"]
        exit_index = outputs["exit_index"].astype(np.int64)
        predictions = outputs["predictions"].astype(np.int64)
        if (exit_index < exits).any() or ((predictions < 0) | (predictions >= classes)).any():
            raise TargetError("the tail server's answer is malformed: exit indices must be "
                              f"tail exits (>= {exits}) and predictions classes below {classes}")
        return predictions, exit_index

    def _decide(self, outputs: dict[str, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        """Apply the tail exits' policies to the logits a generic server returns."""
        assert self.tail_policies is not None
        missing = [name for name in self.outputs if name not in outputs]
        if missing or len(self.outputs) != len(self.tail_policies):
            raise TargetError(f"the tail server answered {sorted(outputs)}; expected one logits "
                              f"output per tail exit ({self.outputs}, "
                              f"{len(self.tail_policies)} policies)")
        logits = [outputs[name].astype(np.float32) for name in self.outputs]
        for name, lg in zip(self.outputs, logits):
            if lg.ndim != 2 or lg.shape[0] != n or not np.isfinite(lg).all():
                raise TargetError(f"the tail server's logits {name!r} have shape "
                                  f"{list(lg.shape)} (want [{n}, classes]) or non-finite values")
        decided = np.full(n, -1)
        predictions = np.zeros(n, np.int64)
        for k, (lg, policy) in enumerate(zip(logits, self.tail_policies)):
            final = k == len(logits) - 1
            score = score_from_probabilities(softmax(lg), policy["criterion"])
            take = (decided < 0) & (final | ((policy["threshold"] is not None) &
                                             (score >= (policy["threshold"] or 0))))
            decided[take] = k
            predictions[take] = np.argmax(lg[take], axis=-1)
        head_exits = len(self.head.exits)
        return predictions, decided + head_exits


def _listed(metadata: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The tensor descriptions under ``key`` of v2 model metadata (objects only)."""
    items = metadata.get(key)
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _error_text(content: bytes) -> str:
    """The server's error message (v2 servers answer {"error": ...}), one line."""
    text = content.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and "error" in parsed:
            text = str(parsed["error"])
        elif isinstance(parsed, dict) and "detail" in parsed:
            text = str(parsed["detail"])
    except ValueError:
        pass
    return " ".join(text.split())[:300]


def wire_report(client: Client, result: SplitResult) -> dict[str, Any]:
    """Bytes per hand-off on the wire, measured, next to what the planner assumes.

    ``planned_*`` is `eedge split plan`'s figure for the same requests (its
    header formula, this server's host and model name, the same rows per
    request); ``tensor_bytes_per_sample`` is the hand-off itself.
    """
    planned = sum(client.planned(rows).request_bytes for rows in result.request_rows)
    one = client.planned(1)
    rows = result.sent_rows
    return {"format": "KServe v2 binary" if client.binary else "KServe v2 JSON",
            "requests": len(result.request_rows), "rows": rows,
            "tensor_bytes_per_sample": one.row_bytes,
            "header_bytes_per_request": one.header_bytes,
            "measured_bytes": result.sent_bytes,
            "measured_bytes_per_sample": result.sent_bytes / rows if rows else 0.0,
            "planned_bytes": planned,
            "planned_bytes_per_sample": planned / rows if rows else 0.0,
            "received_bytes": result.received_bytes}
