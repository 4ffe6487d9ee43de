// A stand-in for a node's web port, for development and for running the
// browser tests against nodes that serve only the native gRPC client API:
// serves web/dist/ under the node's Content-Security-Policy and translates
// grpc-web calls to gRPC (HTTP/2 without TLS) on the node's client API.
//
//   node tests/grpc-web-proxy.mjs --listen 127.0.0.1:4782 --node http://127.0.0.1:4780
//
// Prints "listening http://HOST:PORT/" once ready (port 0 picks one).
import { connect } from "node:http2";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { CSP, repositoryRoot } from "./lib.mjs";

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? process.argv[at + 1] : fallback;
}

const [host, port] = option("listen", "127.0.0.1:0").split(":");
const node = option("node", "http://127.0.0.1:4780");
const dist = option("dist", join(repositoryRoot, "web/dist"));
const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css" };
let session = null;

function h2() {
  if (!session || session.closed || session.destroyed) {
    session = connect(node);
    session.on("error", () => {
      session = null;
    });
  }
  return session;
}

function trailerFrame(headers) {
  const text = Object.entries(headers)
    .filter(([key]) => !key.startsWith(":"))
    .map(([key, value]) => `${key}:${value}\r\n`)
    .join("");
  const body = Buffer.from(text, "latin1");
  const frame = Buffer.alloc(5 + body.length);
  frame[0] = 0x80;
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  return frame;
}

async function grpcWeb(request, response) {
  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  const headers = {
    ":method": "POST",
    ":path": request.url,
    "content-type": "application/grpc",
    te: "trailers",
  };
  for (const name of ["authorization", "grpc-timeout"]) {
    if (request.headers[name]) headers[name] = request.headers[name];
  }
  const call = h2().request(headers);
  response.on("close", () => call.close());
  call.on("response", (head) => {
    const out = { "content-type": "application/grpc-web+proto" };
    for (const [key, value] of Object.entries(head)) {
      if (key.startsWith("grpc-")) out[key] = value;
    }
    response.writeHead(200, out);
    response.flushHeaders();
  });
  call.on("data", (data) => response.write(data));
  call.on("trailers", (trailers) => response.write(trailerFrame(trailers)));
  call.on("end", () => response.end());
  call.on("error", (error) => {
    if (!response.headersSent) {
      response.writeHead(200, {
        "content-type": "application/grpc-web+proto",
        "grpc-status": "14",
        "grpc-message": encodeURIComponent(String(error.message)),
      });
    }
    response.end();
  });
  call.end(Buffer.concat(chunks));
}

const server = createServer(async (request, response) => {
  if ((request.headers["content-type"] ?? "").startsWith("application/grpc-web")) {
    await grpcWeb(request, response);
    return;
  }
  const path = new URL(request.url, "http://x").pathname;
  const file = normalize(path === "/" ? "/index.html" : path);
  try {
    const body = await readFile(join(dist, file));
    response.writeHead(200, {
      "content-type": types[extname(file)] ?? "application/octet-stream",
      "content-security-policy": CSP,
    });
    response.end(body);
  } catch {
    response.writeHead(404, { "content-security-policy": CSP });
    response.end();
  }
});
server.listen(Number(port), host, () => {
  const address = server.address();
  console.log(`listening http://${address.address}:${address.port}/`);
});
