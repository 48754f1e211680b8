// Imported first by main.ts, so it runs before any other module loads: from here on SIGUSR1 never
// reaches Node's inspector (lib/signal-hold.ts says why), and `ksm-agent run` is not killed by a
// SIGHUP (systemctl reload) that comes while it is still starting. Other commands keep SIGHUP's
// default: a `watch` on a closed terminal should end.
import { holdSignals } from '../signal-hold.js';

holdSignals(process.argv[2] === 'run' ? ['SIGUSR1', 'SIGHUP'] : ['SIGUSR1']);
