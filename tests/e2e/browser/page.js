// The test page's script, bundled by build.mjs: the OpenTelemetry web SDK sends spans
// and log events (web vitals from the web-vitals library, and a frustration event) to
// cerflow over OTLP/HTTP, from the page's own origin, with a public token.
import { trace } from '@opentelemetry/api';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { WebTracerProvider } from '@opentelemetry/sdk-trace-web';
import { onCLS, onFCP, onINP, onLCP, onTTFB } from 'web-vitals';

const cfg = window.CERFLOW;
const headers = { Authorization: `Bearer ${cfg.token}` };
const resource = resourceFromAttributes({ 'service.name': 'shop-web' });
const session = `session-${Math.random().toString(16).slice(2)}`;

const tracerProvider = new WebTracerProvider({
  resource,
  spanProcessors: [
    new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${cfg.endpoint}/v1/traces`, headers })),
  ],
});
tracerProvider.register();
const loggerProvider = new LoggerProvider({
  resource,
  processors: [
    // This SDK's processors take their exporter in an options object.
    new SimpleLogRecordProcessor({
      exporter: new OTLPLogExporter({ url: `${cfg.endpoint}/v1/logs`, headers }),
    }),
  ],
});


const tracer = trace.getTracer('cerflow-test-page');
const logger = loggerProvider.getLogger('cerflow-test-page');
const report = (m) => {
  // Each report of one measurement shares its id; the value is in ms (unitless for cls).
  logger.emit({
    eventName: 'browser.web_vital',
    attributes: {
      'browser.web_vital.name': m.name.toLowerCase(),
      'browser.web_vital.value': m.value,
      'browser.web_vital.rating': m.rating,
      'browser.web_vital.id': m.id,
      'session.id': session,
    },
  });
  window.cerflowVitals = (window.cerflowVitals || 0) + 1;
};
const always = { reportAllChanges: true };
onFCP(report, always);
onTTFB(report, always);
onLCP(report, always);
onCLS(report, always);
onINP(report, always);

window.addEventListener('load', () => {
  const nav = performance.getEntriesByType('navigation')[0];
  const span = tracer.startSpan('documentLoad', { attributes: { 'session.id': session } });
  span.end(nav ? performance.timeOrigin + nav.loadEventStart : undefined);
  window.cerflowLoaded = true;
});

document.getElementById('buy').addEventListener('click', () => {
  const span = tracer.startSpan('click buy', { attributes: { 'session.id': session } });
  // A dead click: nothing on the page changes, which is what frustrates.
  logger.emit({ eventName: 'app.dead_click', attributes: { 'session.id': session } });
  span.end();
  window.cerflowClicked = true;
});

// Leaving the page: send what is left (the final cls and inp reports come on hide).
window.addEventListener('pagehide', () => {
  tracerProvider.forceFlush();
  loggerProvider.forceFlush();
});
