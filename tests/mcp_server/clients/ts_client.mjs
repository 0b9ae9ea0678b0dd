// Drive mcpexec with the TypeScript SDK's Client (@modelcontextprotocol/sdk, installed by
// scripts/mcp-clients). Usage:
//   node ts_client.mjs SDK_DIR stdio MCPEXEC HOME | http URL TOKEN  TIMEOUT_MS SHELL WAIT_S
// TIMEOUT_MS is the client's per-request timeout ("default" keeps the SDK's 60 s). Runs SHELL
// through a bounded execute, then get_run until the run is terminal; prints one JSON object.
import path from "node:path";

const [sdk, kind, where, secret, timeoutArg, shell, waitArg] = process.argv.slice(2);
const load = (p) => import(path.join(sdk, "dist/esm", p));
const { Client } = await load("client/index.js");
const transport =
  kind === "stdio"
    ? new (await load("client/stdio.js")).StdioClientTransport({
        command: where,
        args: ["mcp"],
        env: { MCPEXEC_HOME: secret, PATH: "/usr/bin:/bin" },
      })
    : new (await load("client/streamableHttp.js")).StreamableHTTPClientTransport(new URL(where), {
        requestInit: { headers: { Authorization: `Bearer ${secret}` } },
      });
const client = new Client({ name: "ts-sdk-test", version: "0" });
await client.connect(transport);
const options = timeoutArg === "default" ? undefined : { timeout: Number(timeoutArg) };
const terminal = new Set(["completed", "failed", "cancelled"]);
const waitS = Number(waitArg);
const first = await client.callTool(
  { name: "execute", arguments: { shell, wait_s: waitS } },
  undefined,
  options,
);
let run = first.structuredContent;
const out = { first_status: run.status, run_id: run.run_id, polls: 0 };
while (!terminal.has(run.status)) {
  const polled = await client.callTool(
    { name: "get_run", arguments: { run_id: out.run_id, wait_s: waitS } },
    undefined,
    options,
  );
  run = polled.structuredContent;
  out.polls += 1;
}
const logs = await client.callTool(
  { name: "read_logs", arguments: { run_id: out.run_id } },
  undefined,
  options,
);
out.final = run;
out.stdout = logs.structuredContent.data;
await client.close();
console.log(JSON.stringify(out));
