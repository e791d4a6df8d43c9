/**
 * The dashboard: signs in with the cluster token, then polls the manager (nodes, containers,
 * services, migrations every second; cgroup stats of running containers every second) and renders
 * the host grid, the live-data demo, the migration drawer and the notifications.
 */
import type { JSX } from 'preact';
import { useCallback, useEffect, useMemo, useState } from 'preact/hooks';
import type { ContainerView, Migration, NodeView, ServiceView } from './api.ts';
import { clientFor, follow, forgetToken, initialToken, saveToken, why } from './api.ts';
import { Hosts } from './hosts.tsx';
import { MigratePanel } from './migrate.tsx';
import { StreamPanel } from './stream.tsx';
import { sampleAll } from './stats.ts';

/** What one poll of the manager returned. */
interface Cluster { nodes: NodeView[]; containers: ContainerView[]; services: ServiceView[]; migrations: Migration[] }
interface Note { id: number; text: string; kind: 'ok' | 'bad' }

let noteId = 0;

/** The sign-in form: the cluster token, checked against the manager before it is kept. */
function Login(p: { onToken: (t: string) => void; error?: string }): JSX.Element {
  const [t, setT] = useState('');
  return (
    <form class="login panel" onSubmit={(e) => { e.preventDefault(); if (t.trim()) p.onToken(t.trim()); }}>
      <h2>Sign in to Ferry</h2>
      <p class="muted">The cluster token, as the CLI uses it (<code>ferry dashboard</code> prints a link that carries it).</p>
      <input data-testid="token-input" type="password" placeholder="API token" value={t} onInput={(e) => setT((e.target as HTMLInputElement).value)} size={40} />{' '}
      <button class="primary" data-testid="token-save" type="submit">Sign in</button>
      {p.error && <p class="bad" data-testid="login-error">{p.error}</p>}
    </form>
  );
}

/** The whole page. */
export function App(): JSX.Element {
  const [token, setToken] = useState<string | undefined>(() => initialToken());
  const [loginError, setLoginError] = useState<string | undefined>();
  const [cluster, setCluster] = useState<Cluster | undefined>();
  const [pollError, setPollError] = useState<string | undefined>();
  const [panel, setPanel] = useState<string | undefined>();
  const [notes, setNotes] = useState<Note[]>([]);
  const [draining, setDraining] = useState<Record<string, string>>({});
  const [, setStatsTick] = useState(0);
  const client = useMemo(() => (token ? clientFor(token) : undefined), [token]);

  const notify = useCallback((text: string, kind: 'ok' | 'bad') => {
    const id = ++noteId;
    setNotes((n) => [...n, { id, text, kind }]);
    setTimeout(() => setNotes((n) => n.filter((x) => x.id !== id)), 20_000);
    // The browser's own notification too, when the user allowed them (the tab may be in the background).
    if ('Notification' in window && Notification.permission === 'granted') new Notification('Ferry', { body: text });
  }, []);

  const signOut = (): void => { forgetToken(); setToken(undefined); setCluster(undefined); };

  useEffect(() => {
    if (!client) return;
    let stop = false;
    const poll = async (): Promise<void> => {
      try {
        const [nodes, containers, services, migrations] = await Promise.all([client.nodes.list(), client.containers.list(), client.services.list(), client.migrations.list()]);
        if (stop) return;
        setCluster({ nodes, containers, services, migrations });
        setPollError(undefined);
        await sampleAll(client, containers.filter((v) => v.status?.phase === 'running').map((v) => v.container.metadata.name));
        if (!stop) setStatsTick((n) => n + 1);
      } catch (e) {
        if (stop) return;
        const status = (e as { status?: number }).status;
        // A wrong token: back to the sign-in form with the manager's reason.
        if (status === 401) { forgetToken(); setToken(undefined); setCluster(undefined); setLoginError(why(e)); return; }
        setPollError(why(e));
      }
    };
    void poll();
    const t = setInterval(() => void poll(), 1000);
    return () => { stop = true; clearInterval(t); };
  }, [client]);

  // Drain as `ferry node drain` does: cordon, then live-migrate every running container off, one at a time.
  const drain = async (node: string): Promise<void> => {
    if (!client || !cluster) return;
    const say = (s: string): void => setDraining((d) => ({ ...d, [node]: s }));
    try {
      say('cordoning…');
      await client.nodes.cordon(node);
      const moving = (await client.containers.list()).filter((v) => (v.container.placement?.node ?? v.status?.node) === node && v.status?.phase === 'running' && !v.container.metadata.deleting);
      let ok = 0;
      for (const [i, v] of moving.entries()) {
        const name = v.container.metadata.name;
        say(`moving ${name} (${i + 1} of ${moving.length})…`);
        try {
          const m = await client.migrations.create({ container: name });
          const last = await follow(client, m.metadata.name, (x) => say(`moving ${name} (${i + 1} of ${moving.length}): ${x.status.phase}`));
          if (last.status.phase === 'Succeeded') ok++;
          else notify(`drain ${node}: ${name} did not move: ${last.status.error ?? last.status.phase}`, 'bad');
        } catch (e) {
          notify(`drain ${node}: ${name}: ${why(e)}`, 'bad');
        }
      }
      notify(`${node} drained: ${ok} of ${moving.length} container(s) moved; it stays cordoned until undrained`, ok === moving.length ? 'ok' : 'bad');
    } catch (e) {
      notify(`drain ${node}: ${why(e)}`, 'bad');
    } finally {
      setDraining((d) => { const { [node]: _gone, ...rest } = d; return rest; });
    }
  };
  const undrain = async (node: string): Promise<void> => {
    if (!client) return;
    try { await client.nodes.uncordon(node); notify(`${node} is schedulable again`, 'ok'); } catch (e) { notify(`undrain ${node}: ${why(e)}`, 'bad'); }
  };

  if (!token || !client) return <main><Login error={loginError} onToken={(t) => { saveToken(t); setLoginError(undefined); setToken(t); }} /></main>;
  const panelView = panel ? cluster?.containers.find((v) => v.container.metadata.name === panel) : undefined;
  const ready = cluster?.nodes.filter((n) => n.state === 'Ready').length ?? 0;
  return (
    <main>
      <header class="top">
        <h1>Ferry</h1>
        {cluster && <span class="muted" data-testid="summary">{cluster.nodes.length} hosts ({ready} ready) · {cluster.containers.length} containers · {cluster.services.length} services</span>}
        <span class="grow" />
        {pollError && <span class="bad" data-testid="poll-error">{pollError}</span>}
        <button data-testid="logout" onClick={signOut}>Sign out</button>
      </header>
      <div class="notes">{notes.map((n) => <div key={n.id} class={`note ${n.kind}`} data-testid="notification" data-kind={n.kind}>{n.text}</div>)}</div>
      {!cluster ? <p class="muted">Loading…</p> : (
        <>
          <StreamPanel client={client} services={cluster.services} />
          <Hosts {...cluster} draining={draining} openMigrate={setPanel} drain={(n) => void drain(n)} undrain={(n) => void undrain(n)} />
        </>
      )}
      {panel && panelView && cluster && <MigratePanel key={panel} client={client} view={panelView} nodes={cluster.nodes} notify={notify} close={() => setPanel(undefined)} />}
    </main>
  );
}
