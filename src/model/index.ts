/** The domain model: object schemas, store keys, and parsers of user input. Pure; no I/O. */
export * from './container.ts';
export * from './node.ts';
export * from './keys.ts';
export * from './parse.ts';
export * from './port.ts';
export * from './units.ts';
export { modelErrors } from './errors.ts';
export * from './image.ts';
export * from './migration.ts';
export * from './network.ts';
export * from './join.ts';
export * from './service.ts';
export * from './health.ts';
export * from './event.ts';
