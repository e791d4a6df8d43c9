/**
 * The model's second entry: parsers and printers of what users type and read (names, sizes, durations,
 * ports, volumes, env), without the object schemas and their schema library — what the CLI loads on
 * every call. Everything here is also exported by index.ts.
 */
export * from './parse.ts';
export * from './port.ts';
export * from './units.ts';
