/** Errors about malformed user input to the domain model. */
import { defineErrors } from '../errors/index.ts';

/** The model's error table. */
export const modelErrors = defineErrors({
  BAD_MEMORY: { status: 400, message: 'invalid memory size "{value}": {hint}' },
  BAD_CPUS: { status: 400, message: 'invalid CPU value "{value}": {hint}' },
  BAD_DURATION: { status: 400, message: 'invalid duration "{value}": {hint}' },
  BAD_NAME: { status: 400, message: 'invalid name "{value}": {hint}' },
  BAD_ENV: { status: 400, message: 'invalid environment variable "{value}": use KEY=VALUE' },
  BAD_VOLUME: { status: 400, message: 'invalid volume "{value}": {hint}' },
  BAD_RESTART: { status: 400, message: 'invalid restart policy "{value}": use no, always, or on-failure[:MAX]' },
  BAD_PORT: { status: 400, message: 'invalid port "{value}": {hint}' },
  BAD_BANDWIDTH: { status: 400, message: 'invalid bandwidth "{value}": use bytes per second with an optional unit: 50M, 500k, 1G (binary units; "/s" may follow)' },
});
