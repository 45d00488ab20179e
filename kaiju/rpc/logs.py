"""Request logs: the RPC server's `request_logs` / `response_logs`, as RPC middleware.

One line per call (INFO): the method, the duration (ms), the outcome (`ok` or the error
type) and the transport, with the request's correlation id. At DEBUG it also carries the
params (`request_logs`) and the result or error (`response_logs`), with secrets
(passwords, tokens, keys) masked.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec

from kaiju.rpc.errors import InternalError, RPCError

__all__ = ["RequestLog"]


class RequestLog:
    """A middleware `async def (call, call_next)` logging each call through `logger`."""

    __slots__ = ("logger", "params", "results")

    def __init__(self, logger: Any, params: bool = True, results: bool = True):
        self.logger = logger
        self.params = params
        self.results = results

    async def __call__(self, call: Any, call_next: Any) -> Any:
        if not self.logger.isEnabledFor(logging.INFO):
            return await call_next(call)
        started = time.perf_counter()
        try:
            result = await call_next(call)
        except RPCError as exc:
            self.log(call, None, exc, time.perf_counter() - started if call.ran else None)
            raise
        except Exception as exc:
            self.log(call, None, InternalError(base_exc=exc), time.perf_counter() - started)
            raise
        self.log(call, result, None, time.perf_counter() - started)
        return result

    def log(self, call: Any, result: Any, error: RPCError | None, seconds: float | None) -> None:
        """Log one call: its result, or the RPCError it was answered with (`seconds` None: its
        params were refused, the method did not run)."""
        fields: dict[str, Any] = {
            "method": call.method,
            "duration_ms": None if seconds is None else round(seconds * 1000, 3),
            "outcome": "ok" if error is None else error.type,
            "transport": call.transport,
            "correlation_id": call.correlation_id,
        }
        if self.logger.isEnabledFor(logging.DEBUG):
            from kaiju.masking import mask_secrets

            if self.params:
                fields["params"] = mask_secrets(_plain_params(call))
            if self.results:
                fields["result" if error is None else "error"] = mask_secrets(
                    result if error is None else error.to_dict()
                )
        self.logger.info("RPC request", **fields)


def _plain_params(call: Any) -> Any:
    """A call's params as plain data, for masking: validated ones, or refused ones as the
    request gave them (raw JSON, decoded)."""
    try:
        return msgspec.to_builtins(call.params)
    except RPCError:  # refused: as the request gave them
        params = call.given_params
    except (TypeError, ValueError):
        return "<not shown: not plain data>"
    try:
        if isinstance(params, msgspec.Raw):
            return msgspec.json.decode(params)
        return msgspec.to_builtins(params)
    except (TypeError, ValueError, msgspec.DecodeError):
        return "<not shown: not plain data>"  # never a repr: it could carry a secret unmasked
