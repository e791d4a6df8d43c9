import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseShowInfo, parseShowProc, parseShowStat, parseVar, serviceStats } from './stat.ts';
import type { LbState } from './types.ts';

// Captured from HAProxy 2.6.12 and cut after req_tot: the parser goes by the header, not by position.
const HEADER = '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,';
const STAT = [
  HEADER,
  'ferry_http,FRONTEND,,,0,1,9968,1,43,102,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,1,0,1,,,,0,1,0,0,0,0,,1,1,1,',
  'web_0,s1,0,0,2,1,,7,43,102,,0,,0,0,0,0,UP 1/3,5,1,0,0,0,0,0,,1,4,1,,1,,2,1,,1,L7OK,200,,0,1,0,0,0,0,,,,6,',
  'web_0,s2,1,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,0,0,0,0,,1,4,2,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,',
  'web_0,s3,0,0,0,0,,3,0,0,,0,,0,0,0,0,DOWN,1,1,0,0,0,0,0,,1,4,3,,0,,2,0,,0,* L7STS,500,,0,0,0,0,0,0,,,,3,',
  'web_0,BACKEND,1,0,2,1,1,10,43,102,0,0,,0,0,0,0,UP,1,1,0,,0,0,0,,1,4,0,,1,,1,1,,1,,,,0,1,0,0,0,0,,,,9,',
  '',
].join('\n');

describe('lb stat parsing', () => {
  it('reads show stat rows by their header', () => {
    const rows = parseShowStat(STAT);
    assert.equal(rows.length, 5);
    assert.deepEqual(rows.map((r) => [r.proxy, r.name, r.type, r.status]), [
      ['ferry_http', 'FRONTEND', 'frontend', 'OPEN'],
      ['web_0', 's1', 'server', 'UP'],
      ['web_0', 's2', 'server', 'MAINT'],
      ['web_0', 's3', 'server', 'DOWN'],
      ['web_0', 'BACKEND', 'backend', 'UP'],
    ]);
    const s1 = rows[1]!;
    assert.deepEqual([s1.sessions, s1.sessionsTotal, s1.requestsTotal, s1.weight, s1.checkStatus], [2, 7, 6, 5, 'L7OK']);
    assert.equal(rows[3]!.checkStatus, 'L7STS', 'the "* " of a check in progress is dropped');
    assert.equal(rows[2]!.queued, 1);
    assert.deepEqual(parseShowStat(''), []);
  });

  it('projects pool slots back onto services and replicas', () => {
    const state: LbState = {
      shape: {},
      routes: { web: { service: 'web', mode: 'http', hosts: ['w.test'], balance: 'roundrobin', hold: true, servers: [
        { name: 'c-1', address: '10.0.0.1', port: 80, state: 'ready' },
        { name: 'c-2', address: '10.0.0.3', port: 80, state: 'ready' },
      ] } },
      slots: { web: { backend: 'web_0', servers: { 'c-1': 1, 'c-2': 3 } } },
    };
    const [web] = serviceStats(parseShowStat(STAT), state, new Map([['web_0', 2]]));
    assert.ok(web);
    assert.deepEqual({ ...web, servers: undefined }, { service: 'web', backend: 'web_0', status: 'UP', sessions: 2, sessionsTotal: 10, requestsTotal: 9, queued: 1, hold: { on: true, waiting: 2 }, servers: undefined });
    assert.deepEqual(web.servers.map((s) => [s.name, s.slot, s.status, s.requestsTotal]), [['c-1', 'web_0/s1', 'UP', 6], ['c-2', 'web_0/s3', 'DOWN', 3]]);
  });

  it('reads the master CLI show proc (2.6 layout), show info and get var', () => {
    const proc = parseShowProc([
      '#<PID>          <type>          <reloads>       <uptime>        <version>      ',
      '11998           master          2 [failed: 1]   0d00h00m47s     2.6.12-1+deb12u4',
      '# workers',
      '13813           worker          0               0d00h00m01s     2.6.12-1+deb12u4',
      '# old workers',
      '12011           worker          1               0d00h00m47s     2.6.12-1+deb12u4',
      '# programs',
      '',
    ].join('\n'));
    assert.deepEqual(proc, {
      masterPid: 11998, masterReloads: 2, failedReloads: 1,
      workers: [{ pid: 13813, kind: 'worker', reloads: 0 }],
      oldWorkers: [{ pid: 12011, kind: 'old-worker', reloads: 1 }],
    });
    assert.deepEqual(parseShowInfo('Name: HAProxy\nPid: 12011\nUptime: 0d 0h00m26s\n'), { Name: 'HAProxy', Pid: '12011', Uptime: '0d 0h00m26s' });
    assert.equal(parseVar('proc.ferry_held_web_0: type=sint value=<3>\n'), 3);
    assert.equal(parseVar('Variable not found.\n'), undefined);
  });
});
