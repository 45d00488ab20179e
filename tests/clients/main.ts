// Calls a running app through the generated client, over HTTP and over a WebSocket, and
// prints what it got as one JSON line (read by test_generated.py).
import { Client, HttpTransport, RPCError, WebSocketTransport } from "./api";

declare const process: { argv: string[]; exit(code: number): never }; // Node's, without @types/node

async function main(rpcUrl: string, wsUrl: string): Promise<void> {
  const overHttp = new Client(new HttpTransport(rpcUrl));
  const sum = await overHttp.shop.add(2, 3);
  const receipt = await overHttp.shop.order([{ name: "pear", qty: 2 }, { name: "fig" }], "gift");
  let refused = "";
  try {
    await overHttp.shop.mine();
  } catch (e) {
    refused = e instanceof RPCError ? `${e.name} ${e.code}` : String(e);
  }
  const socket = new WebSocketTransport(wsUrl);
  await socket.connect();
  const overWs = new Client(socket);
  const events: unknown[] = [];
  const heard = new Promise<void>((resolve) =>
    socket.subscribe("shop.*", (topic, data) => {
      events.push({ topic, data });
      resolve();
    }),
  );
  const tags = await overWs.shop.tags();
  await overWs.shop.shout("shop.news", { n: 1 });
  await heard;
  socket.close();
  console.log(JSON.stringify({ sum, receipt, refused, tags, events }));
}

main(process.argv[2], process.argv[3]).catch((e) => {
  console.error(e);
  process.exit(1);
});
