"""A typed TypeScript client from an OpenRPC document: one module, no dependencies, passing
`tsc --strict`.

Each schema of the document's components becomes an interface (an object) or a type alias;
`Client` has an object per service with a function per RPC method, typed from its params
and result. It calls through a `Transport`: `HttpTransport` (fetch, keeping the Session-Id a
login answers with) or `WebSocketTransport` (one socket, answers matched by id, events to
the handlers of `subscribe`). An error answer is thrown as an `RPCError` with its code and data.
"""

from __future__ import annotations

import json
from typing import Any

from kaiju.clients.naming import doc_lines, groups, identifier, ref_name

__all__ = ["typescript_client"]

_SCALARS = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean", "null": "null"}


def ts_type(schema: dict[str, Any]) -> str:
    """The TypeScript type for a JSON schema; `unknown` when unknown."""
    if "$ref" in schema:
        return ref_name(schema["$ref"])
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(dict.fromkeys(ts_type(s) for s in schema[key]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(ts_type({**schema, "type": k}) for k in kind)
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        if "prefixItems" in schema:
            return "[" + ", ".join(ts_type(s) for s in schema["prefixItems"]) + "]"
        return f"Array<{ts_type(schema.get('items', {}))}>"
    if kind == "object":
        return f"Record<string, {ts_type(schema.get('additionalProperties') or {})}>"
    return "unknown"


def _component(name: str, schema: dict[str, Any]) -> list[str]:
    if schema.get("type") == "object" and "properties" in schema:
        required = set(schema.get("required", ()))
        lines = [f"export interface {name} {{"]
        for field, sub in schema["properties"].items():
            optional = "" if field in required else "?"
            lines.append(f"  {json.dumps(field)}{optional}: {ts_type(sub)};")
        return [*lines, "}"]
    return [f"export type {name} = {ts_type(schema)};"]


def _method(attr: str, m: dict[str, Any]) -> list[str]:
    args: list[str] = []
    sent: list[str] = []
    taken: set[str] = set()
    params = m.get("params", [])
    # optional params after required ones, as TypeScript wants
    for p in sorted(params, key=lambda p: not p.get("required")):
        name = identifier(p["name"], taken)
        taken.add(name)
        args.append(f"{name}{'' if p.get('required') else '?'}: {ts_type(p.get('schema', {}))}")
        sent.append(f"{json.dumps(p['name'])}: {name}")
    result = ts_type(m.get("result", {}).get("schema", {}))
    lines = ["    /**", *(f"     * {line}".rstrip() for line in doc_lines(m)), "     */"] if doc_lines(m) else []
    call = f'this.transport.call("{m["name"]}", {{ {", ".join(sent)} }})'
    return [
        *lines,
        f"    {json.dumps(attr)}: ({', '.join(args)}): Promise<{result}> =>",
        f"      {call} as Promise<{result}>,",
    ]


_RUNTIME = """\
/** What the client calls through. */
export interface Transport {
  call(method: string, params?: Record<string, unknown>): Promise<unknown>;
}

/** A JSON-RPC error answer: its code, message and data (data.type names the kind). */
export class RPCError extends Error {
  constructor(readonly code: number, message: string, readonly data?: Record<string, unknown>) {
    super(message);
    this.name = typeof data?.type === "string" ? data.type : "RPCError";
  }
}

interface Answer {
  id?: number | string | null;
  result?: unknown;
  error?: { code: number; message: string; data?: Record<string, unknown> };
  method?: string;
  params?: unknown;
}

function unwrap(answer: Answer): unknown {
  if (answer.error) throw new RPCError(answer.error.code, answer.error.message, answer.error.data);
  return answer.result;
}

/** JSON-RPC over HTTP POST (fetch); keeps the Session-Id a login answers with. */
export class HttpTransport implements Transport {
  private ids = 0;
  constructor(readonly url: string, readonly headers: Record<string, string> = {}, public sessionId?: string) {}

  async call(method: string, params?: Record<string, unknown>): Promise<unknown> {
    const headers: Record<string, string> = { "Content-Type": "application/json", ...this.headers };
    if (this.sessionId) headers["Session-Id"] = this.sessionId;
    const resp = await fetch(this.url, {
      method: "POST",
      headers,
      credentials: "same-origin",
      body: JSON.stringify({ jsonrpc: "2.0", id: ++this.ids, method, params }),
    });
    const named = resp.headers.get("Session-Id");
    if (named !== null) this.sessionId = named || undefined;
    return unwrap((await resp.json()) as Answer);
  }
}

/** JSON-RPC over one WebSocket: answers matched by id, events handed to `subscribe`'s handlers. */
export class WebSocketTransport implements Transport {
  private ids = 0;
  private socket?: WebSocket;
  private readonly pending = new Map<number, { resolve: (a: Answer) => void; reject: (e: Error) => void }>();
  private readonly handlers: Array<{ pattern: RegExp; handler: (topic: string, data: unknown) => void }> = [];

  constructor(readonly url: string) {}

  /** Open the socket (resolves once it is open). */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url);
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error(`cannot connect to ${this.url}`));
      socket.onclose = () => {
        for (const waiting of this.pending.values()) waiting.reject(new Error("the WebSocket closed"));
        this.pending.clear();
      };
      socket.onmessage = (event: MessageEvent) => this.received(String(event.data));
      this.socket = socket;
    });
  }

  close(): void {
    this.socket?.close();
  }

  call(method: string, params?: Record<string, unknown>): Promise<unknown> {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return Promise.reject(new Error("the WebSocket is not open"));
    const id = ++this.ids;
    const answered = new Promise<Answer>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    return answered.then(unwrap);
  }

  /** Subscribe to the events of `topic` (a pattern the server allows); `handler` gets each. */
  async subscribe(topic: string, handler: (topic: string, data: unknown) => void): Promise<void> {
    await this.call("rpc.subscribe", { topic });
    const escaped = topic.replace(/[.+^${}()|\\\\]/g, "\\\\$&");
    const pattern = new RegExp("^" + escaped.replace(/\\*/g, ".*").replace(/\\?/g, ".") + "$");
    this.handlers.push({ pattern, handler });
  }

  private received(text: string): void {
    const data = JSON.parse(text) as Answer | Answer[];
    for (const answer of Array.isArray(data) ? data : [data]) {
      if (answer.id === undefined && typeof answer.method === "string") {
        for (const { pattern, handler } of this.handlers) {
          if (pattern.test(answer.method)) handler(answer.method, answer.params);
        }
      } else if (typeof answer.id === "number" && this.pending.has(answer.id)) {
        this.pending.get(answer.id)?.resolve(answer);
        this.pending.delete(answer.id);
      }
    }
  }
}
"""


def typescript_client(document: dict[str, Any]) -> str:
    """The source of a typed TypeScript client module for `document` (an OpenRPC document)."""
    info = document.get("info", {})
    out = [
        f"// A typed client of {info.get('title', 'the app')} {info.get('version', '')}: made by `kaiju-run client`",
        "// from its OpenRPC document. Do not edit: generate it again when the API changes.",
        "",
        _RUNTIME,
    ]
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        out += _component(identifier(name), schema) + [""]
    topics = {t["pattern"]: t["scope"] for t in document.get("x-topics") or []}
    out += ["/** Event topics a client may subscribe to, with the scope each needs. */"]
    out += [f"export const TOPICS: Record<string, string> = {json.dumps(topics)};", ""]
    out += ["/** The whole API: an object per service, a function per method. */", "export class Client {"]
    out += ["  constructor(readonly transport: Transport) {}", ""]
    for service, methods in groups(document.get("methods", [])).items():
        out.append(f"  readonly {identifier(service, {'transport'})} = {{")
        for rest, m in methods:
            out += _method(identifier(rest), m)
        out += ["  };", ""]
    out.append("}")
    return "\n".join(out) + "\n"
