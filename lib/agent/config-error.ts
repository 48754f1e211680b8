// A configuration the agent cannot use. The message names the file, the key and the values
// allowed, so the operator can fix it from the one line (journald shows only that).
import { InvalidArgumentError } from '../errors.js';
import type { ErrorDetails } from '../errors.js';

export class ConfigError extends InvalidArgumentError {
  constructor(message: string, details: ErrorDetails = {}) {
    super(message, details);
    this.name = 'ConfigError';
  }
}
