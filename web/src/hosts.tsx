/**
 * Hosts grouped by region and zone, each with its state, capacity and what it runs: containers (with
 * their service, migratable verdict, live CPU and memory) and a Migrate action; drain and undrain.
 */
import type { JSX } from 'preact';
import type { ContainerView, Migration, NodeView, ServiceView } from './api.ts';
import { ended, nodeOf, topology } from './api.ts';
import { Chart } from './chart.tsx';
import { bytes } from './format.ts';
import { seriesOf } from './stats.ts';

/** What the host grid needs. */
export interface HostsProps {
  nodes: NodeView[];
  containers: ContainerView[];
  services: ServiceView[];
  migrations: Migration[];
  /** Drains in progress by node: a line saying how far. */
  draining: Record<string, string>;
  openMigrate: (container: string) => void;
  drain: (node: string) => void;
  undrain: (node: string) => void;
}

/** Groups `items` by `key`, keys sorted ('' last, shown as "no …"). */
function groupBy<T>(items: T[], key: (t: T) => string): [string, T[]][] {
  const m = new Map<string, T[]>();
  for (const i of items) m.set(key(i), [...(m.get(key(i)) ?? []), i]);
  return [...m].sort(([a], [b]) => (a === '' ? 1 : b === '' ? -1 : a.localeCompare(b)));
}

/** CPU and memory charts of one container. */
function Stats(p: { name: string }): JSX.Element {
  const s = seriesOf(p.name);
  const lastMem = [...s.mem].reverse().find((v) => v !== null);
  const lastCpu = [...s.cpu].reverse().find((v) => v !== null);
  return (
    <div class="stats" data-testid={`stats-${p.name}`} data-samples={s.t.length}>
      <div class="muted">CPU {lastCpu == null ? '-' : `${lastCpu.toFixed(1)}%`} · memory {bytes(lastMem ?? undefined)}{s.limitBytes ? ` of ${bytes(s.limitBytes)}` : ''}</div>
      <Chart width={300} height={110} data={[s.t.slice(), s.cpu.slice(), s.mem.slice()]} axes={{ y: (v) => `${v.toFixed(0)}%`, mem: (v) => bytes(v) }}
        series={[{ label: 'CPU %', stroke: '#ffb74d', value: (v) => (v === null ? '-' : v.toFixed(1)) }, { label: 'memory', stroke: '#81c784', scale: 'mem', value: (v) => (v === null ? '-' : bytes(v)) }]} />
    </div>
  );
}

/** One container on a host. */
function ContainerRow(p: { v: ContainerView; moving?: Migration; openMigrate: (c: string) => void }): JSX.Element {
  const c = p.v.container;
  const name = c.metadata.name;
  const phase = p.v.status?.phase ?? 'pending';
  const svc = c.spec.labels['ferry.io/service'];
  const mig = p.v.status?.migratable;
  return (
    <li class="container" data-testid="container" data-name={name} data-node={nodeOf(p.v) ?? ''}>
      <div class="row">
        <b>{name}</b>
        <span class={`phase ${phase}`}>{phase}</span>
        {svc && <span class="badge svc">service {svc}</span>}
        <span class={`badge ${mig?.ok ? 'lm' : 'no'}`} title={mig?.ok ? 'CRIU can checkpoint it' : mig?.reasons.join('; ') ?? 'not checked yet'}>
          {mig === undefined ? 'migratable ?' : mig.ok ? 'migratable' : 'not migratable'}
        </span>
        {p.moving && <span class="badge moving" data-testid={`moving-${name}`}>→ {p.moving.spec.to}: {p.moving.status.phase}</span>}
        <button data-testid={`migrate-open-${name}`} disabled={phase !== 'running'} onClick={() => p.openMigrate(name)}>Migrate</button>
      </div>
      {mig && !mig.ok && <div class="muted small">{mig.reasons.join('; ')}</div>}
      {phase === 'running' && <Stats name={name} />}
    </li>
  );
}

/** One host. */
function HostCard(p: HostsProps & { n: NodeView }): JSX.Element {
  const node = p.n.node;
  const name = node.metadata.name;
  const mine = p.containers.filter((v) => nodeOf(v) === name).sort((a, b) => a.container.metadata.name.localeCompare(b.container.metadata.name));
  const memUsed = mine.reduce((t, v) => t + (v.container.spec.resources.memoryBytes ?? 0), 0);
  const cpuUsed = mine.reduce((t, v) => t + (v.container.spec.resources.cpus ?? 0), 0);
  const services = [...new Set(mine.map((v) => v.container.spec.labels['ferry.io/service']).filter((s): s is string => !!s))];
  const cap = node.status.capacity;
  const cordoned = node.spec.unschedulable;
  return (
    <div class={`host ${p.n.state} ${cordoned ? 'cordoned' : ''}`} data-testid="host" data-node={name} data-state={p.n.state} data-unschedulable={cordoned ? 'yes' : 'no'}>
      <header>
        <h3>{name}</h3>
        <span class={`state ${p.n.state}`} data-testid="host-state" title={p.n.reason}>{p.n.state}</span>
        {cordoned && <span class="badge no">cordoned</span>}
      </header>
      <div class="muted small">
        {cap.cpus} CPUs · {bytes(cap.memoryBytes)} · reserved {cpuUsed ? `${cpuUsed} CPU, ` : ''}{bytes(memUsed)} · {mine.length} container{mine.length === 1 ? '' : 's'}
      </div>
      <div class="bar thin" title="memory reserved by container limits"><div style={{ width: `${Math.min(100, cap.memoryBytes ? (memUsed / cap.memoryBytes) * 100 : 0)}%` }} /></div>
      {services.length > 0 && <div class="small">services: {services.map((s) => <span key={s} class="badge svc">{s}</span>)}</div>}
      <div class="row">
        {p.draining[name] ? <span class="muted" data-testid={`draining-${name}`}>{p.draining[name]}</span>
          : cordoned ? <button data-testid={`undrain-${name}`} onClick={() => p.undrain(name)}>Undrain</button>
            : <button data-testid={`drain-${name}`} onClick={() => p.drain(name)}>Drain</button>}
      </div>
      <ul class="containers">
        {mine.map((v) => (
          <ContainerRow key={v.container.metadata.name} v={v} openMigrate={p.openMigrate}
            moving={p.migrations.find((m) => m.spec.container === v.container.metadata.name && !m.spec.checkOnly && !ended(m))} />
        ))}
      </ul>
    </div>
  );
}

/** The host grid. */
export function Hosts(p: HostsProps): JSX.Element {
  const regions = groupBy(p.nodes, (n) => topology(n).region);
  return (
    <section class="panel" data-testid="hosts">
      <h2>Hosts</h2>
      {regions.map(([region, inRegion]) => (
        <div key={region} class="region" data-testid="region" data-region={region}>
          <h3 class="region-name"><span class="badge region">{region || 'no region'}</span></h3>
          {groupBy(inRegion, (n) => topology(n).zone).map(([zone, inZone]) => (
            <div key={zone} class="zone" data-zone={zone}>
              <div class="muted small">zone {zone || '-'}</div>
              <div class="hosts">{inZone.sort((a, b) => a.node.metadata.name.localeCompare(b.node.metadata.name)).map((n) => <HostCard key={n.node.metadata.name} {...p} n={n} />)}</div>
            </div>
          ))}
        </div>
      ))}
    </section>
  );
}
