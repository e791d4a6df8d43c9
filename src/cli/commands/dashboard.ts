/** `ferry dashboard`: the URL of the dashboard the manager serves, with this CLI's token in its fragment. */
import type { Command } from 'commander';
import { FerryClient } from '../../client/index.ts';
import { printJson } from '../output.ts';
import { leaderUrl } from '../config.ts';
import type { Ctx } from './containers.ts';

/** The dashboard URL of the manager at `api`; the token rides in the fragment, which browsers never send to a server. */
export function dashboardUrl(api: string, token?: string): string {
  const base = `${api.replace(/\/+$/, '')}/ui/`;
  return token ? `${base}#token=${encodeURIComponent(token)}` : base;
}

/** Registers `ferry dashboard`. */
export function dashboardCommands(program: Command, ctx: Ctx): void {
  program.command('dashboard').description('print the URL of the dashboard (with the API token, so the page opens signed in)')
    .action(async () => {
      const ep = ctx.client().endpoint;
      // Standbys serve no page (they redirect API calls only): the dashboard is the leader's.
      const api = await leaderUrl(ep);
      // Checked first: a URL that leads nowhere helps nobody.
      await new FerryClient({ url: api, ...(ep.token ? { token: ep.token } : {}) }).health();
      const url = dashboardUrl(api, ep.token);
      if (ctx.format() === 'json') return printJson({ url });
      process.stdout.write(`${url}\n`);
    });
}
