import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { isFerryError } from '../../errors/index.ts';
import { bridgeRules, destroyBridge, ensureBridge, linkInfo, ruleTag, splitRuleLine, taggedRules } from './bridge.ts';
import { parseSubnet } from './ipv4.ts';
import { freeSubnet, ipJson, linkExists, requireHost, runPrefix } from './testkit.ts';

test('bridge rules: one intra-bridge ACCEPT by default; NAT adds forwarding and a MASQUERADE for the subnet', () => {
  const subnet = parseSubnet('10.213.5.0/24');
  const plain = bridgeRules({ name: 'br9', subnet, outboundNat: false });
  assert.deepEqual(plain, [{ table: 'filter', chain: 'FORWARD', position: 'insert', spec: ['-i', 'br9', '-o', 'br9', '-m', 'comment', '--comment', 'ferry:br9', '-j', 'ACCEPT'] }]);
  const nat = bridgeRules({ name: 'br9', subnet, outboundNat: true });
  assert.equal(nat.length, 4);
  const masq = nat.find((r) => r.table === 'nat');
  assert.deepEqual(masq?.spec, ['-s', '10.213.5.0/24', '!', '-o', 'br9', '-m', 'comment', '--comment', 'ferry:br9', '-j', 'MASQUERADE']);
  assert.ok(nat.every((r) => r.spec.includes(ruleTag('br9'))));
});

test('iptables -S lines split into arguments, quotes removed', () => {
  assert.deepEqual(splitRuleLine('-A FORWARD -i fb1 -o fb1 -m comment --comment "ferry:fb1" -j ACCEPT'), ['-A', 'FORWARD', '-i', 'fb1', '-o', 'fb1', '-m', 'comment', '--comment', 'ferry:fb1', '-j', 'ACCEPT']);
  assert.deepEqual(splitRuleLine('-A X -m comment --comment "two \\"words\\""'), ['-A', 'X', '-m', 'comment', '--comment', 'two "words"']);
});

test('ensureBridge is idempotent, destroyBridge removes the bridge and every tagged rule', async (t) => {
  if (!requireHost(t, ['ip', 'iptables'])) return;
  const name = runPrefix();
  const subnet = parseSubnet(freeSubnet());
  const config = { name, subnet, outboundNat: false };
  t.after(() => destroyBridge(name));

  await ensureBridge(config);
  await ensureBridge(config);
  const info = await linkInfo(name);
  assert.deepEqual(info, { kind: 'bridge', up: true, master: undefined });
  const [link] = ipJson<Array<{ address: string; addr_info: Array<{ family: string; local: string; prefixlen: number }> }>>(undefined, ['addr', 'show', 'dev', name]);
  assert.equal(link?.address, `0a:58:${subnet.gateway.split('.').map((b) => Number(b).toString(16).padStart(2, '0')).join(':')}`);
  assert.deepEqual(link?.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`), [`${subnet.gateway}/24`]);
  assert.equal(readFileSync(`/proc/sys/net/ipv4/conf/${name}/forwarding`, 'utf8').trim(), '1');
  assert.equal((await taggedRules('filter', 'FORWARD', ruleTag(name))).length, 1, 'the rule is not added twice');
  assert.equal((await taggedRules('nat', 'POSTROUTING', ruleTag(name))).length, 0, 'no NAT unless asked');

  // destroy sweeps by tag, so a rule of any shape left by an older version goes too.
  execFileSync('iptables', ['-w', '5', '-A', 'FORWARD', '-i', name, '-m', 'comment', '--comment', ruleTag(name), '-j', 'ACCEPT']);
  await destroyBridge(name);
  assert.equal(linkExists(name), false);
  assert.equal((await taggedRules('filter', 'FORWARD', ruleTag(name))).length, 0);
  await destroyBridge(name); // idempotent
});

test('a link of the bridge name that is not a bridge is refused', async (t) => {
  if (!requireHost(t, ['ip', 'iptables'])) return;
  const name = runPrefix();
  execFileSync('ip', ['link', 'add', 'name', name, 'type', 'veth', 'peer', 'name', `${name}p`]);
  t.after(() => execFileSync('ip', ['link', 'del', 'dev', name]));
  await assert.rejects(ensureBridge({ name, subnet: parseSubnet(freeSubnet()), outboundNat: false }), (e: unknown) => {
    assert.ok(isFerryError(e, 'NET_BAD_CONFIG'));
    assert.match(e.message, /veth link, not a bridge/);
    return true;
  });
  await assert.rejects(ensureBridge({ name: 'bad name', subnet: parseSubnet('10.213.5.0/24'), outboundNat: false }), (e: unknown) => isFerryError(e, 'NET_BAD_CONFIG'));
});
