/** The `ferry` command. */
import { Command, CommanderError } from 'commander';
import { FerryClient } from '../client/index.ts';
import { resolveEndpoint } from './config.ts';
import { reportError, EXIT, type OutputFormat } from './output.ts';
import { containerCommands, type Ctx } from './commands/containers.ts';
import { imageCommands } from './commands/images.ts';
import { nodeCommands } from './commands/nodes.ts';
import { systemCommands } from './commands/system.ts';
import { migrationCommands } from './commands/migrations.ts';
import { networkCommands } from './commands/networks.ts';
import { serviceCommands } from './commands/services.ts';
import { lbCommands } from './commands/lb.ts';
import { dashboardCommands } from './commands/dashboard.ts';

const program = new Command('ferry')
  .description('Ferry: run containers on your own hosts, and move them while they run')
  .version('0.1.0')
  .option('-o, --output <format>', 'output format: table or json', 'table')
  .option('--api <url>', 'manager API URL (default: FERRY_API, or the ferry.json of `ferry up`)')
  .option('--token <token>', 'API token (default: FERRY_TOKEN, or the ferry.json of `ferry up`)')
  .option('--home <dir>', 'Ferry home (default: FERRY_HOME or /var/lib/ferry)')
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

const globals = (): { output: string; api?: string; token?: string; home?: string } => program.opts();
let exitCode = 0;
const ctx: Ctx = {
  client: () => new FerryClient(resolveEndpoint(globals())),
  format: () => (globals().output === 'json' ? 'json' : 'table'),
  setExit: (c) => { exitCode = c; },
};

program.hook('preAction', () => {
  const f = globals().output;
  if (f !== 'table' && f !== 'json') {
    process.stderr.write(`Error: --output must be table or json, not "${f}"\n`);
    process.exit(EXIT.usage);
  }
});

containerCommands(program, ctx);
imageCommands(program, ctx);
nodeCommands(program, ctx);
migrationCommands(program, ctx);
networkCommands(program, ctx);
serviceCommands(program, ctx);
lbCommands(program, globals);
dashboardCommands(program, ctx);
systemCommands(program, ctx, globals);
for (const c of program.commands) {
  c.exitOverride();
  for (const s of c.commands) s.exitOverride();
}

try {
  await program.parseAsync(process.argv);
  process.exitCode = exitCode;
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? 0 : EXIT.usage;
  } else {
    process.exitCode = reportError(e, ctx.format() as OutputFormat);
  }
}
