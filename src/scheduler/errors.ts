/** The scheduler's error table: requests it cannot read (the scheduler itself never fails otherwise). */
import { defineErrors } from '../errors/index.ts';

/** Scheduler errors; each message quotes the bad input and says how to write it. */
export const schedulerErrors = defineErrors({
  SCHEDULER_BAD_CONSTRAINT: { status: 400, message: 'invalid constraint "{value}": {hint}' },
  SCHEDULER_BAD_WORKLOAD_CLASS: { status: 400, message: 'invalid workload class "{value}": use one of {classes}' },
  SCHEDULER_BAD_STRATEGY: { status: 400, message: 'invalid scheduling strategy "{value}": use spread or binpack' },
});
