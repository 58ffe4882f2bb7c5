// Sends a list of spans to cerflow with the OpenTelemetry Node SDK.
//
//   node send.mjs MODE ENDPOINT SPANS.json
//
// MODE: grpc | grpc-gzip | http-json | http-json-gzip
// ENDPOINT: http://127.0.0.1:PORT for gRPC, http://127.0.0.1:PORT/v1/traces for HTTP
// SPANS.json: {"resource": {...}, "batch": bool, "spans": [{name, kind, start_ns, end_ns,
//              attributes, status, events}]} with the times as decimal strings.
// Prints one JSON line {"exported": N, "results": [codes]} and exits 0 when every
// export succeeded, 1 otherwise.

import { readFileSync } from "node:fs";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { ExportResultCode } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { OTLPTraceExporter as GrpcExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { OTLPTraceExporter as HttpExporter } from "@opentelemetry/exporter-trace-otlp-http";

const [mode, endpoint, file] = process.argv.slice(2);
if (!mode || !endpoint || !file) {
  console.error("usage: node send.mjs MODE ENDPOINT SPANS.json");
  process.exit(2);
}
const input = JSON.parse(readFileSync(file, "utf8"));

function makeExporter() {
  switch (mode) {
    case "grpc":
      return new GrpcExporter({ url: endpoint, timeoutMillis: 10000 });
    case "grpc-gzip":
      return new GrpcExporter({ url: endpoint, compression: "gzip", timeoutMillis: 10000 });
    case "http-json":
      return new HttpExporter({ url: endpoint, timeoutMillis: 10000 });
    case "http-json-gzip":
      return new HttpExporter({ url: endpoint, compression: "gzip", timeoutMillis: 10000 });
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

// Keeps every export result: span processors otherwise only log a failure.
const inner = makeExporter();
const results = [];
let exported = 0;
const recording = {
  export(spans, done) {
    inner.export(spans, (result) => {
      results.push(result.code);
      if (result.code !== ExportResultCode.SUCCESS) {
        console.error("export failed:", result.error);
      } else {
        exported += spans.length;
      }
      done(result);
    });
  },
  shutdown: () => inner.shutdown(),
  forceFlush: () => (inner.forceFlush ? inner.forceFlush() : Promise.resolve()),
};

const KINDS = {
  server: SpanKind.SERVER,
  client: SpanKind.CLIENT,
  internal: SpanKind.INTERNAL,
  producer: SpanKind.PRODUCER,
  consumer: SpanKind.CONSUMER,
};

/** Nanoseconds since the epoch (a decimal string) as an exact HrTime. */
function hrTime(ns) {
  const n = BigInt(ns);
  return [Number(n / 1_000_000_000n), Number(n % 1_000_000_000n)];
}

const processor = input.batch
  ? new BatchSpanProcessor(recording, { scheduledDelayMillis: 60000, maxExportBatchSize: 512 })
  : new SimpleSpanProcessor(recording);
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes(input.resource),
  spanProcessors: [processor],
});
const tracer = provider.getTracer("cerflow-e2e-node", "1.0");

for (const s of input.spans) {
  const span = tracer.startSpan(s.name, {
    kind: KINDS[s.kind],
    startTime: hrTime(s.start_ns),
    attributes: s.attributes,
  });
  for (const e of s.events) {
    span.addEvent(e, hrTime(s.start_ns));
  }
  if (s.status === "ok") span.setStatus({ code: SpanStatusCode.OK });
  if (s.status === "error") span.setStatus({ code: SpanStatusCode.ERROR, message: "boom" });
  span.end(hrTime(s.end_ns));
}

await provider.forceFlush();
await provider.shutdown();
console.log(JSON.stringify({ exported, results }));
const ok = results.length > 0 && results.every((c) => c === ExportResultCode.SUCCESS) && exported === input.spans.length;
process.exit(ok ? 0 : 1);
