// The three prom-client 15.1.3 classes the agent uses, imported from their own files: the package
// index also loads the Pushgateway (https, tls), the default metrics and OpenTelemetry, which
// cost the agent 11 MB of RSS it has no use for. Types are the package's own.
declare module 'prom-client/lib/registry' {
  import { Registry } from 'prom-client';
  export = Registry;
}
declare module 'prom-client/lib/gauge' {
  import { Gauge } from 'prom-client';
  export = Gauge;
}
declare module 'prom-client/lib/counter' {
  import { Counter } from 'prom-client';
  export = Counter;
}
