"""The device side of split computing: run the head, send what it does not decide.

Works against ``eedge serve`` (which returns decisions) and against Triton or
any KServe v2 server hosting the tail as one ONNX model (which returns the
tail's exit logits; the client then applies the exits' thresholds itself).
The server's metadata says which it is, so calling code does not change.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import TargetError
from eedge.ir.bundle import Bundle, load_bundle
from eedge.policies.criteria import score_from_probabilities, softmax
from eedge.runtime.cascade import Cascade
from eedge.split.encoding import HandoffTensor, encode
from eedge.strict_json import dumps


@dataclass
class SplitResult:
    predictions: np.ndarray
    exit_index: np.ndarray
    sent_rows: int
    sent_bytes: int


class Client:
    def __init__(self, head: Bundle | str | Path, url: str, model: str,
                 runtime: str | None = None, timeout_s: float = 30.0,
                 handoff_encoding: bool = False, tail_policies: list[dict[str, Any]] | None
                 = None) -> None:
        self.head = head if isinstance(head, Bundle) else load_bundle(head)
        if (self.head.manifest.get("split") or {}).get("role") != "head":
            raise TargetError("the client needs a head bundle (`eedge split export`)")
        self.cascade = Cascade(self.head, runtime=runtime)
        self.url, self.model, self.timeout_s = url.rstrip("/"), model, timeout_s
        self.handoff_encoding = handoff_encoding
        self.metadata = self._request("GET", f"/v2/models/{model}")
        self.platform = self.metadata.get("platform", "")
        self.tail_policies = tail_policies
        if self.platform != "eedge" and tail_policies is None:
            raise TargetError("a generic KServe/Triton tail returns logits: pass the tail's "
                              "exit policies (tail_policies=[e['policy'] for e in tail.exits])")

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise TargetError(f"the tail server answered {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise TargetError(f"cannot reach the tail server at {self.url}: {exc}") from exc

    def _inputs(self, handoff: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        if self.handoff_encoding:
            quant = {t["name"]: t.get("quant") for io in self.cascade.io for t in io["outputs"]}
            tensors = [HandoffTensor(n, a, *(((q["scale"][0], q["zero_point"][0]))
                                             if (q := quant.get(n)) else (0.0, 0)))
                       for n, a in handoff.items()]
            payload = base64.b64encode(encode(tensors, compress=True)).decode()
            return [{"name": "eedge_handoff", "datatype": "BYTES", "shape": [1],
                     "data": [payload]}]
        kinds = {np.dtype(np.float32): "FP32", np.dtype(np.int8): "INT8"}
        return [{"name": n, "datatype": kinds[a.dtype], "shape": list(a.shape),
                 "data": a.reshape(-1).tolist()} for n, a in handoff.items()]

    def infer(self, x: np.ndarray) -> SplitResult:
        local = self.cascade.infer(x)
        predictions, exits = local.predictions.copy(), local.exit_index.copy()
        sent = 0
        if local.pending.size:
            body = {"inputs": self._inputs(local.handoff)}
            sent = len(dumps(body))
            reply = self._request("POST", f"/v2/models/{self.model}/infer", body)
            outputs = {o["name"]: np.asarray(o["data"]).reshape(o["shape"])
                       for o in reply["outputs"]}
            if self.platform == "eedge":
                remote_pred, remote_exit = outputs["predictions"], outputs["exit_index"]
            else:
                remote_pred, remote_exit = self._decide(outputs)
            predictions[local.pending] = remote_pred
            exits[local.pending] = remote_exit
        return SplitResult(predictions, exits, int(local.pending.size), sent)

    def _decide(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Apply the tail exits' policies to the logits a generic server returns."""
        assert self.tail_policies is not None
        names = [o["name"] for o in self.metadata["outputs"]]
        logits = [outputs[n].astype(np.float32) for n in names]
        n = logits[0].shape[0]
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
